"""ASGI responses sent part by part: 50 MB, server-sent events, and a client leaving
mid-stream or before any response."""

import hashlib
import random
import socket
import time
import uuid

import httpx
import pytest

from support import RssSampler, wait_until
from asgi_support import SIZE, CHUNK, PART, MAX_RSS_GROWTH_KIB, log_excerpt, start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


def test_a_50_mb_response_is_sent_part_by_part(server, measurement):
    warm = server.get("/raw/download", params={"size": CHUNK, "chunk": PART})
    assert warm.status_code == 200 and len(warm.content) == CHUNK
    piece = random.Random(PART).randbytes(PART)
    expected = hashlib.sha256()
    for i in range(SIZE // PART):
        expected.update(piece)
    received = hashlib.sha256()
    count = 0
    before = server.rss_kib()
    with RssSampler(server) as rss:
        with server.client.stream("GET", "/raw/download", params={"size": SIZE, "chunk": PART}) as response:
            assert response.status_code == 200
            for data in response.iter_bytes():
                received.update(data)
                count += len(data)
    assert count == SIZE
    assert received.hexdigest() == expected.hexdigest()
    growth = rss.peak - before
    measurement(f"ASGI 50 MB download: server RSS {before} KiB before, peak {rss.peak} KiB (+{growth} KiB)")
    assert growth < MAX_RSS_GROWTH_KIB, f"server RSS grew by {growth} KiB during a 50 MB download"


def test_server_sent_events_arrive_one_by_one(server, measurement):
    events, arrivals = [], []
    buffer = b""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        with client.stream("GET", "/raw/sse", params={"n": 4, "gap": 0.3}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            for piece in response.iter_raw():
                now = time.monotonic()
                buffer += piece
                while b"\n\n" in buffer:
                    event, buffer = buffer.split(b"\n\n", 1)
                    events.append(event)
                    arrivals.append(now)
    assert [e.split(b"data: ")[1] for e in events] == [b"0", b"1", b"2", b"3"], events
    gaps = [round(b - a, 3) for a, b in zip(arrivals, arrivals[1:])]
    measurement(f"ASGI SSE: 4 events sent 0.3 s apart arrived with gaps {gaps} s")
    # the app sleeps 0.3 s between events: each must arrive on its own, as it is sent
    assert all(gap >= 0.15 for gap in gaps), f"events arrived bunched together: gaps {gaps}"


def test_a_client_leaving_mid_stream_is_seen_by_the_app_within_1_s(server, measurement):
    token = uuid.uuid4().hex
    received = 0
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        with client.stream("GET", "/raw/forever", params={"token": token}) as response:
            assert response.status_code == 200
            for piece in response.iter_raw():
                received += len(piece)
                if received >= 20 * 1024:
                    # leaving the loop closes the iterator, which closes the connection
                    # (the response was not read to its end)
                    closed_at = time.monotonic()
                    break

    def seen():
        report = server.get_json("/raw/report", params={"token": token})
        return report if "disconnect" in report and "send_error" in report else None

    report = wait_until(seen, timeout=10)
    last = server.get_json("/raw/report", params={"token": token})
    assert report, f"the app did not see the disconnect (and a failing send) in 10 s: {last}"
    # time.monotonic is one clock for the whole machine (CLOCK_MONOTONIC)
    measurement(
        f"ASGI client left mid-stream: http.disconnect after {report['disconnect'] - closed_at:.3f} s, "
        f"send() raised {report['send_error_type']} after {report['send_error'] - closed_at:.3f} s"
    )
    assert report["disconnect"] >= closed_at, "http.disconnect came before the client left"
    assert report["disconnect"] - closed_at < 1.0, (
        f"http.disconnect came {report['disconnect'] - closed_at:.3f} s after the client left"
    )
    assert report["send_error"] - closed_at < 1.0, (
        f"send() failed {report['send_error'] - closed_at:.3f} s after the client left"
    )
    assert report["send_error_is_oserror"] is True, report


def test_a_client_leaving_before_any_response_is_seen_by_the_app_within_1_s(server, measurement):
    """The app awaits receive() after the body, sending nothing (a long poll): only the
    connection going away can wake it."""
    token = uuid.uuid4().hex
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=30)
    try:
        sock.sendall(
            (
                f"POST /raw/longpoll?token={token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.http_port}\r\n"
                "Content-Length: 4\r\n\r\nwait"
            ).encode()
        )
        assert server.wait_for_log(f"vivarium-asgi-longpoll-waiting {token}"), log_excerpt(server)
    finally:
        closed_at = time.monotonic()
        sock.close()

    report = wait_until(lambda: server.get_json("/raw/report", params={"token": token}), timeout=10)
    assert report, "the app did not see the client leave within 10 s"
    measurement(f"ASGI client left a long poll: {report['type']} after {report['at'] - closed_at:.3f} s")
    assert report["type"] == "http.disconnect", report
    assert report["at"] >= closed_at, "http.disconnect came before the client left"
    assert report["at"] - closed_at < 1.0, (
        f"http.disconnect came {report['at'] - closed_at:.3f} s after the client left"
    )
    # The app then returns without a response: the client leaving is not the
    # app failing, so nothing is logged as an error for it.
    time.sleep(0.3)
    errors = [line for line in server.log_text().splitlines() if token in line and '"level":"error"' in line]
    assert not errors, errors
