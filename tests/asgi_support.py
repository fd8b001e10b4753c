"""What the ASGI test files share: the raw ASGI app's server, and reading
responses byte for byte."""

import socket

from support import app_dir, python_block

STARLETTE = "1.10.0"
DJANGO = "6.1.3"

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
PART = 64 * 1024  # the contract: bodies arrive in parts of at most 64 KiB
MAX_RSS_GROWTH_KIB = 25 * 1024  # half the body: a server holding it whole cannot pass


def start_raw_server(caddy_launcher):
    """Caddy serving tests/apps/asgi_raw under /raw/ with 3 executor threads."""
    return caddy_launcher.start(
        python_block("/raw/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw"), threads=3)
    )


def log_excerpt(server, limit=4000):
    return server.log_text()[-limit:]


def raw_request(port: int, request: bytes, timeout: float = 30):
    """Sends `request` as is over a fresh connection (which must end with the response:
    send Connection: close) and returns (status, headers, body, client_port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(request)
        data = b""
        while True:
            piece = sock.recv(65536)
            if not piece:
                break
            data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "chunked" in ",".join(headers.get("transfer-encoding", [])):
        body = dechunk(body)
    return status, headers, body, client_port


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += data[:size]
        data = data[size + 2:]
    return out


def header_values(scope, name: str) -> list[str]:
    return [v["bytes"] for n, v in scope["headers"] if n["bytes"] == name]
