"""ASGI request bodies: up to 64 KiB in one message, larger and chunked ones part by
part as the app reads them, and a client leaving mid-upload."""

import hashlib
import random
import socket
import time
import uuid

import httpx
import pytest

from support import post_streamed_upload, random_chunks, wait_until
from asgi_support import SIZE, CHUNK, PART, MAX_RSS_GROWTH_KIB, start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


@pytest.mark.parametrize("size", [0, 1000, PART])
def test_a_body_up_to_64_kib_arrives_in_one_message(server, size):
    payload = random.Random(size).randbytes(size)
    response = server.post("/raw/body", content=payload)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["messages"] == [[size, False]], report["messages"]
    assert report["sha256"] == hashlib.sha256(payload).hexdigest()



def test_a_50_mb_upload_is_received_part_by_part(server, measurement):
    # warm-up: lazily allocated buffers are not counted
    assert server.post("/raw/body", content=b"x" * CHUNK).status_code == 200
    upload = post_streamed_upload(server, "/raw/body", SIZE, CHUNK)
    response, before = upload.response, upload.rss_before_kib
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["bytes"] == SIZE
    assert report["sha256"] == upload.sha256
    assert report["chunks"] > 1, report["chunks"]
    assert report["max_chunk"] <= PART, report["max_chunk"]
    assert report["messages"][-1][1] is False
    assert all(more for _, more in report["messages"][:-1])
    growth = upload.rss_peak_kib - before
    measurement(
        f"ASGI 50 MB upload in {report['chunks']} parts: server RSS {before} KiB before, "
        f"peak {upload.rss_peak_kib} KiB (+{growth} KiB)"
    )
    assert growth < MAX_RSS_GROWTH_KIB, f"server RSS grew by {growth} KiB during a 50 MB upload"


def test_a_chunked_upload_without_content_length_arrives_part_by_part(server):
    size = 3 * CHUNK + 12345
    expected = hashlib.sha256()

    def body():
        for piece in random_chunks(3, size, 100_000):
            expected.update(piece)
            yield piece

    response = server.post("/raw/body", content=body())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["bytes"] == size
    assert report["sha256"] == expected.hexdigest()
    assert report["chunks"] > 1
    assert report["max_chunk"] <= PART


def test_a_client_leaving_mid_upload_is_a_disconnect_not_the_end_of_the_body(server, measurement):
    """Content-Length promises 1 MiB; the client sends 300000 bytes and goes away. The
    app must get http.disconnect (within 1 s), never more_body=False after a truncated
    body, which would pass it off as the whole request."""
    token = uuid.uuid4().hex
    declared, sent = 1024 * 1024, 300_000
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    try:
        sock.sendall(
            (
                f"POST /raw/body?token={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.http_port}\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            ).encode()
            + b"u" * sent
        )
        # the app has received the full 64 KiB parts of what was sent
        got = wait_until(
            lambda: server.get_json("/raw/report", params={"token": token}).get("bytes", 0)
            >= (sent // PART) * PART,
            timeout=15,
        )
        assert got, server.get_json("/raw/report", params={"token": token})
    finally:
        closed_at = time.monotonic()
        sock.close()

    report = wait_until(
        lambda: (r := server.get_json("/raw/report", params={"token": token})).get("outcome") and r,
        timeout=10,
    )
    last = server.get_json("/raw/report", params={"token": token})
    assert report, f"the app's receive() did not return after the client left: {last}"
    measurement(
        f"ASGI client left mid-upload: the app got {report['outcome']!r} after "
        f"{report['at'] - closed_at:.3f} s, having read {report['bytes']} of {declared} bytes"
    )
    assert report["outcome"] == "http.disconnect", (
        f"the app was handed {report['bytes']} of {declared} bytes as a complete body "
        f"(more_body=False) instead of http.disconnect: {report}"
    )
    assert report["at"] - closed_at < 1.0, report


def test_receive_after_the_response_is_complete_gives_http_disconnect(server):
    token = uuid.uuid4().hex
    assert server.get("/raw/after", params={"token": token}).status_code == 200
    report = wait_until(lambda: server.get_json("/raw/report", params={"token": token}))
    assert report == {"after_complete": "http.disconnect"}, report
