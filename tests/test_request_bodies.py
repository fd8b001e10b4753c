"""Request bodies and paths at the edges of HTTP/1.1, the same rules for WSGI and ASGI:
a malformed chunked body, the Transfer-Encoding an app is told of, a body the app
leaves unread, and paths with `.`/`..` segments or repeated slashes.

Malformed input goes over raw sockets: httpx neither sends it nor leaves a path's dot
segments alone."""

import json
import socket
import threading
import uuid

import httpx
import pytest

from support import app_dir, python_block, wait_until

KINDS = {
    "wsgi": {"module_wsgi": "bodies_wsgi:application"},
    "asgi": {"module_asgi": "bodies_asgi:app"},
}

BAD_CHUNKS = {
    "chunk size not hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk data longer than its size": b"5\r\nhello, world\r\n0\r\n\r\n",
    "chunk size too large": b"5\r\nhello\r\n" + b"f" * 20 + b"\r\n",
}


@pytest.fixture(scope="module", params=sorted(KINDS))
def server(request, caddy_launcher):
    """One app of each kind mounted at /app, and the same app at the root."""
    kind = request.param
    blocks = [
        python_block("/app/*", **KINDS[kind], working_dir=app_dir("bodies")),
        python_block(None, **KINDS[kind], working_dir=app_dir("bodies")),
    ]
    caddy = caddy_launcher.start("\n".join(blocks), name=f"bodies-{kind}")
    caddy.kind = kind
    yield caddy
    caddy.stop()


class Connection:
    """A raw HTTP/1.1 client connection: requests go out as given, responses are read
    one by one (Content-Length or chunked), so a connection can be reused."""

    def __init__(self, port: int, timeout: float = 30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self) -> tuple[int, dict, bytes]:
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.file.readline().split(b";")[0], 16):
                body += self.file.read(size)
                self.file.readline()
            self.file.readline()
        else:
            body = self.file.read(int(headers.get("content-length", 0)))
        return status, headers, body

    def closed_by_server(self) -> bool:
        try:
            return self.file.read(1) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def request_head(method: str, target: str, *headers: str) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


def chunked(body: bytes, size: int = 8192) -> bytes:
    out = b""
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out += b"%x\r\n%s\r\n" % (len(piece), piece)
    return out + b"0\r\n\r\n"


# ------------------------------------------------------------ malformed bodies


@pytest.mark.parametrize("malformation", sorted(BAD_CHUNKS))
def test_a_malformed_chunked_body_gets_400_and_one_log_line_saying_what_was_wrong(server, malformation):
    token = uuid.uuid4().hex
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("POST", f"/read?token={token}", "Transfer-Encoding: chunked")
                  + BAD_CHUNKS[malformation])
        status, _, body = conn.response()
    finally:
        conn.close()
    assert status == 400, (status, body, server.log_text()[-3000:])
    assert wait_until(lambda: server.log_entries_containing(token), timeout=10)
    lines = server.log_entries_containing(token)
    assert len(lines) == 1, lines
    line, entry = lines[0]
    assert entry is not None and entry["level"] == "warn", line
    assert entry["msg"] == "request body could not be read" and entry["status"] == 400, line
    assert "chunk" in entry["error"], line  # net/http's words for what was wrong
    assert "traceback" not in server.log_text()
    if server.kind == "asgi":
        # The app heard of a disconnect, not of an end of its body.
        assert server.get_json("/report", params={"token": token}) == "http.disconnect"


def test_after_a_malformed_body_the_app_goes_on_serving(server):
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("POST", "/read", "Transfer-Encoding: chunked") + b"zz\r\n")
        assert conn.response()[0] == 400
    finally:
        conn.close()
    response = server.post("/read", content=b"fine")
    assert response.status_code == 200
    assert response.json()["size"] == 4


# ------------------------------------------------------------ transfer-encoding


def test_a_chunked_body_reaches_the_app_with_its_transfer_encoding(server):
    body = bytes(range(256)) * 1000
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("POST", "/read", "Transfer-Encoding: chunked") + chunked(body))
        status, _, answer = conn.response()
    finally:
        conn.close()
    assert status == 200, answer
    got = json.loads(answer)
    assert got["transfer_encoding"] == "chunked"
    assert got["content_length"] is None
    assert got["size"] == len(body)


def test_a_body_with_content_length_has_no_transfer_encoding(server):
    got = server.post("/read", content=b"x" * 1000).json()
    assert got["transfer_encoding"] is None
    assert got["content_length"] == "1000"


# ------------------------------------------------------------ unread bodies

UNREAD = {
    "chunked, 10 KiB": ("Transfer-Encoding: chunked", lambda b: chunked(b), 10 * 1024),
    "chunked, 200 KiB": ("Transfer-Encoding: chunked", lambda b: chunked(b), 200 * 1024),
    "Content-Length, 200 KiB": ("Content-Length: %d", lambda b: b, 200 * 1024),
}


@pytest.mark.parametrize("body_kind", sorted(UNREAD))
def test_a_body_the_app_does_not_read_leaves_the_connection_usable(server, body_kind):
    """Up to 256 KiB of unread body is read and dropped after the response, so the
    keep-alive connection serves the next request."""
    header, encode, size = UNREAD[body_kind]
    if "%d" in header:
        header = header % size
    before = server.log_text()
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("POST", "/ignore", header) + encode(b"u" * size))
        assert conn.response()[::2] == (200, b"ignored")
        conn.send(request_head("GET", "/where"))
        status, _, body = conn.response()
        assert status == 200, body
        assert json.loads(body)["path"] == "/where"
    finally:
        conn.close()
    new_log = server.log_text()[len(before):]
    assert "Body.Read" not in new_log, new_log


def test_a_large_unread_body_gets_its_response_and_then_what_the_kind_of_app_does(server):
    """Past 256 KiB of unread body, a WSGI response says Connection: close and the
    server closes the connection (net/http's rule, before the response is written); an
    ASGI app may still read its body after it started its response, so Vivarium reads
    and drops the rest once the response is complete, as uvicorn does, and the
    connection serves the next request."""
    size = 8 * 1024 * 1024
    conn = Connection(server.http_port)
    sent = threading.Event()

    def upload():
        try:
            conn.send(request_head("POST", "/ignore", f"Content-Length: {size}") + b"u" * size)
        except OSError:
            pass  # the server closed the connection before taking all of it
        sent.set()

    sender = threading.Thread(target=upload, daemon=True)
    sender.start()
    try:
        status, headers, body = conn.response()
        assert (status, body) == (200, b"ignored")
        if server.kind == "wsgi":
            assert headers.get("connection") == "close"
            assert conn.closed_by_server()
        assert sent.wait(30), "the upload is still blocked: the server neither read it nor closed"
        if server.kind == "asgi":
            conn.send(request_head("GET", "/where"))
            assert conn.response()[0] == 200
    finally:
        conn.close()
        sender.join(30)


# ------------------------------------------------------------ paths


@pytest.mark.parametrize(
    "raw, seen",
    [
        ("/a/./b/../c//d", "/a/c/d"),
        ("/a/b/../", "/a/"),
        ("//a///b", "/a/b"),
        ("/a/%2e%2e/b", "/b"),
    ],
)
def test_dot_segments_and_repeated_slashes_are_resolved_in_the_path_the_app_sees(server, raw, seen):
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("GET", raw))
        status, _, body = conn.response()
    finally:
        conn.close()
    assert status == 200, body
    got = json.loads(body)
    assert got["prefix"] == ""
    assert got["path"] == seen
    assert got["raw"] == raw  # as sent: RAW_URI, ASGI's raw_path


def test_a_path_that_climbs_back_into_the_mount_point_is_the_path_it_resolves_to(server):
    conn = Connection(server.http_port)
    try:
        conn.send(request_head("GET", "/app/../app/environ"))
        status, _, body = conn.response()
    finally:
        conn.close()
    assert status == 200, body
    got = json.loads(body)
    if server.kind == "wsgi":
        assert (got["prefix"], got["prefix"] + got["path"]) in {("/app", "/app/environ"), ("", "/app/environ")}
    else:
        assert got["path"] == "/app/environ"
        assert got["prefix"] in ("/app", "")
    assert got["raw"] == "/app/../app/environ"
