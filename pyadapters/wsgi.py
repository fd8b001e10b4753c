"""The WSGI (PEP 3333) adapter, run inside each app interpreter.

The C worker calls the handler with an environ already holding the request's
CGI variables and a token naming the request. A response known in one piece
(a list body, or a first chunk that fills Content-Length) goes back as the
handler's return value, so it rides on the worker's single call into Go; a
streamed one is sent chunk by chunk, each flushed, as PEP 3333 requires.
"""

from __future__ import annotations

import sys
import traceback
from types import TracebackType
from typing import Any, Callable, Iterable, Iterator

import _vivarium
from vivarium_boot import REQUEST_CODES, header_block

DEFAULT_ATTR = "application"

FLUSH = _vivarium.FLUSH
ABORT = _vivarium.ABORT
TIMED_OUT = _vivarium.TIMED_OUT
RequestTimeout = _vivarium.RequestTimeout
_send = _vivarium.send
_read = _vivarium.read

_CHUNK = 64 * 1024
# The innermost frames of a logged traceback: one of a runaway recursion
# would otherwise hold millions.
TRACEBACK_LIMIT = 100

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Answer = tuple[bytes | None, bytes | None, int]


class Input:
    """wsgi.input: the request body, read from the client as the app asks for it."""

    __slots__ = ("_token", "_buf")

    def __init__(self, token: int) -> None:
        self._token = token
        self._buf = b""

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buf]
            self._buf = b""
            while chunk := _read(self._token, _CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        buf = self._buf
        while len(buf) < size:
            chunk = _read(self._token, max(size - len(buf), _CHUNK) if buf else size)
            if not chunk:
                break
            buf += chunk
        self._buf = buf[size:]
        return buf[:size]

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        buf = self._buf
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl >= 0:
                end = nl + 1
                break
            if 0 <= limit <= len(buf):
                end = limit
                break
            start = len(buf)
            chunk = _read(self._token, _CHUNK)
            if not chunk:
                end = len(buf)
                break
            buf += chunk
        if 0 <= limit < end:
            end = limit
        self._buf = buf[end:]
        return buf[:end]

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class FileWrapper:
    """wsgi.file_wrapper: iterates a file in blocks and closes it when done."""

    def __init__(self, filelike: Any, blksize: int = _CHUNK) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.blksize):
            yield block


class Response:
    """start_response, write() and the state of one response."""

    __slots__ = ("token", "status", "headers", "sent", "length")

    def __init__(self, token: int) -> None:
        self.token = token
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.sent = False
        self.length = -1

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit() or status[3] != " ":
            raise ValueError(f"invalid WSGI status {status!r}: want a str like '200 OK'")
        if not isinstance(headers, list):
            raise TypeError(f"headers must be a list of (name, value) tuples, not {type(headers).__name__}")
        self.status = status
        self.headers = headers
        self.length = -1
        for name, value in headers:
            if name.lower() == "content-length":
                try:
                    self.length = int(value)
                except ValueError:
                    pass
        return self.write

    def head(self) -> bytes:
        """Status and headers as Go reads them: NUL-separated, latin-1."""
        if self.status is None:
            raise AssertionError("the app returned a body before calling start_response()")
        head = header_block(self.headers, self.status)
        self.sent = True
        return head

    def write(self, data: bytes) -> None:
        """The legacy write() callable: the data goes out at once."""
        if self.status is None:
            raise AssertionError("write() called before start_response()")
        _send(self.token, None if self.sent else self.head(), data, FLUSH)


def _log_exception(environ: dict[str, Any], what: str) -> None:
    _vivarium.log(
        _vivarium.LOG_ERROR,
        f"{what} for {environ.get('REQUEST_METHOD')} {environ.get('SCRIPT_NAME', '')}"
        f"{environ.get('PATH_INFO', '')}\n{traceback.format_exc(limit=-TRACEBACK_LIMIT)}",
    )


def _respond(app: Callable[..., Iterable[bytes]], environ: dict[str, Any], response: Response) -> Answer:
    result = app(environ, response.start_response)
    try:
        if type(result) is list or type(result) is tuple:
            # Fully built already: one piece, one crossing.
            body = b"".join(result)
            return (None if response.sent else response.head()), body, 0
        # Iterate once: an iterable may hand out a fresh iterator each time.
        it = iter(result)
        for chunk in it:
            if not chunk:
                continue
            if not response.sent and len(chunk) == response.length:
                # The first chunk is the whole body Content-Length announced.
                for extra in it:
                    if extra:
                        raise ValueError("the app sent more bytes than its Content-Length")
                return response.head(), bytes(chunk), 0
            _send(response.token, None if response.sent else response.head(), chunk, FLUSH)
        return (None if response.sent else response.head()), None, 0
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def make_handler(
    app: Callable[..., Iterable[bytes]], options: dict[str, Any]
) -> tuple[Callable[[dict[str, Any], int], Answer], dict[str, Any]]:
    base: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": bool(options.get("multiprocess")),
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
        "SERVER_SOFTWARE": "Caddy (Vivarium)",
    }

    def handler(environ: dict[str, Any], token: int) -> Answer:
        environ["wsgi.input"] = Input(token)
        response = Response(token)
        try:
            return _respond(app, environ, response)
        except ConnectionError:
            # The client went away mid-response; nothing left to tell it.
            return None, None, ABORT
        except RequestTimeout:
            # Its timeout or its app's stop interrupted it; the server logged
            # where it was, and answers 504 if it has not yet.
            return None, None, ABORT | TIMED_OUT
        except BaseException:
            _log_exception(environ, "exception in app")
            return None, None, ABORT

    REQUEST_CODES.add(handler.__code__)
    return handler, base
