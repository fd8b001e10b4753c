"""Request and response bodies are streamed between the client and the app, never
held whole in the server."""

import hashlib
import uuid

import httpx
import pytest

from support import RssSampler, app_dir, post_streamed_upload, python_block, random_chunks, wait_until

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_RSS_GROWTH_KIB = 25 * 1024  # half the body: a server holding it whole cannot pass


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = caddy_launcher.start(
        "\n".join([
            python_block("/s/*", "stream_app:app", working_dir=app_dir("streaming")),
            python_block("/raw/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw")),
        ])
    )
    yield caddy
    caddy.stop()



def warm_up(server):
    # one small transfer each way first, so lazily allocated buffers are not counted
    assert server.post("/s/upload", content=b"x" * CHUNK).status_code == 200
    assert len(server.get("/s/download", params={"size": CHUNK, "seed": 1, "chunk": 65536}).content) == CHUNK


def test_a_50_mb_upload_is_streamed_through_wsgi_input(server, measurement):
    warm_up(server)
    upload = post_streamed_upload(server, "/s/upload", SIZE, CHUNK)
    before, peak = upload.rss_before_kib, upload.rss_peak_kib
    assert upload.response.status_code == 200, upload.response.text
    assert upload.response.json() == {"bytes": SIZE, "sha256": upload.sha256}
    growth = peak - before
    measurement(f"50 MB upload: server RSS {before} KiB before, peak {peak} KiB (+{growth} KiB)")
    assert growth < MAX_RSS_GROWTH_KIB, f"server RSS grew by {growth} KiB during a 50 MB upload"


def test_a_50_mb_response_is_streamed_from_a_generator(server, measurement):
    warm_up(server)
    expected = hashlib.sha256()
    for piece in random_chunks(11, SIZE, 65536):
        expected.update(piece)

    received = hashlib.sha256()
    count = 0
    before = server.rss_kib()
    with RssSampler(server) as rss:
        with server.client.stream(
            "GET", "/s/download", params={"size": SIZE, "seed": 11, "chunk": 65536}
        ) as response:
            assert response.status_code == 200
            for piece in response.iter_bytes():
                received.update(piece)
                count += len(piece)
    assert count == SIZE
    assert received.hexdigest() == expected.hexdigest()
    growth = rss.peak - before
    measurement(f"50 MB download: server RSS {before} KiB before, peak {rss.peak} KiB (+{growth} KiB)")
    assert growth < MAX_RSS_GROWTH_KIB, f"server RSS grew by {growth} KiB during a 50 MB download"


def test_a_chunked_upload_without_content_length_is_read_to_its_end(server):
    expected = hashlib.sha256()

    def body():
        for piece in random_chunks(3, 3 * CHUNK + 12345, 100_000):
            expected.update(piece)
            yield piece

    response = server.post("/s/upload", content=body())
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 200, response.text
    assert response.json() == {"bytes": 3 * CHUNK + 12345, "sha256": expected.hexdigest()}


# Per kind of app: where it takes an upload, and where it tells how many bytes
# of it it has read so far.
UPLOAD = {"wsgi": ("/s/upload", "/s/progress"), "asgi": ("/raw/body", "/raw/report")}


@pytest.mark.parametrize("kind", sorted(UPLOAD))
def test_the_app_reads_the_body_while_the_client_is_still_sending(server, kind):
    """The client sends half its body, then waits until the app has read that half:
    a server that buffered the whole request before calling the app never gets there."""
    upload, progress = UPLOAD[kind]
    token = uuid.uuid4().hex
    half = b"a" * (2 * CHUNK)
    seen = {}

    def body():
        yield half
        with httpx.Client(base_url=server.base_url, timeout=10) as side:
            seen["progress"] = wait_until(
                lambda: side.get(progress, params={"token": token}).json().get("bytes", 0) >= len(half),
                timeout=30,
            )
        yield half

    response = server.post(
        upload, params={"token": token}, content=body(),
        headers={"Content-Length": str(2 * len(half))},
    )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == 2 * len(half)
    assert seen.get("progress") is True, (
        "the app had not read the first half of the body while the client held the second"
    )


def test_the_client_gets_the_first_chunk_before_the_app_finishes(server):
    """The app yields a first chunk, then blocks until a second request opens its
    gate: a server that buffered the response would never deliver the first chunk."""
    token = uuid.uuid4().hex
    with httpx.Client(base_url=server.base_url, timeout=20) as client:
        with client.stream("GET", "/s/gated", params={"token": token}) as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            try:
                first = next(chunks)
            finally:
                # whatever happened, let the app finish
                released = server.get("/s/release", params={"token": token})
            assert released.status_code == 200
            assert first == b"first;"
            assert b"".join(chunks) == b"second"
