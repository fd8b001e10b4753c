"""`write_timeout D`: a WSGI response write that makes no progress for D (a client
that does not read) is cut, which ends that response and frees its thread; clients
that never read cannot hold all threads. A client that reads, however slowly, keeps
its response. Another app in the same process serves throughout."""

import socket
import time

import httpx
import pytest

from controls_support import block, log_entries
from support import tail, wait_until

BOUND = 60  # seconds (a hang guard, not a timing check)


def client_asking(server, path, rcvbuf=None):
    """A connection that has asked for path and reads nothing yet."""
    sock = socket.create_connection(("127.0.0.1", server.http_port))
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.http_port}\r\n\r\n".encode())
    return sock


@pytest.mark.parametrize("isolation", ["interpreter", "process"])
def test_clients_that_never_read_do_not_hold_the_threads(start_caddy, isolation):
    server = start_caddy("\n".join([
        block("/a/*", "wsgi", threads=2, write_timeout="2s", timeout="60s", name="slowly-read", isolation=isolation),
        block("/other/*", "wsgi"),
    ]))
    paths = ["/a/big?mb=64", "/a/stream?mb=64", "/a/big?mb=64", "/a/stream?mb=64", "/a/big?mb=64"]
    clients = [client_asking(server, path, rcvbuf=4096) for path in paths]
    try:
        with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
            assert client.get("/other/info").status_code == 200
            # each stalled write is cut within 1.5 x write_timeout, and the
            # freed thread takes the next request
            started = time.monotonic()
            assert client.get("/a/info").status_code == 200
            took = time.monotonic() - started
        assert took < BOUND
        assert wait_until(lambda: len(log_entries(server, "made no progress within write_timeout")) == 5, timeout=BOUND), (
            tail(server.log_text()))
        entries = log_entries(server, "made no progress within write_timeout")
        assert sorted(e["uri"] for e in entries) == sorted(paths), entries
        assert all(e["app"] == "slowly-read" and e["level"] == "warn" for e in entries), entries
    finally:
        for sock in clients:
            sock.close()


def test_a_client_that_reads_slowly_gets_all_of_its_response(start_caddy):
    server = start_caddy(block("/a/*", "wsgi", write_timeout="1s"))
    sock = client_asking(server, "/a/big?mb=6")
    received = 0
    started = time.monotonic()
    try:
        sock.settimeout(BOUND)
        while True:
            part = sock.recv(64 << 10)
            if not part:
                break
            received += len(part)
            if received >= (6 << 20):
                break
            time.sleep(0.02)  # at most 3 MB/s: slower than the server writes
    finally:
        sock.close()
    took = time.monotonic() - started
    assert received >= 6 << 20, f"got {received} bytes in {took:.1f} s:\n{tail(server.log_text())}"
    assert took > 1, "the read did not outlast write_timeout: it proves nothing"
    assert "made no progress" not in server.log_text(), tail(server.log_text())
