"""ASGI 3 over HTTP: frameworks (Starlette, Django) next to a WSGI app in one process,
the HTTP scope, request bodies streamed part by part, responses flushed part by part,
client disconnects, the executor, a full queue, and errors before/after the response
started."""

import asyncio
import hashlib
import json
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect

from support import (
    RssSampler,
    app_dir,
    post_streamed_upload,
    python_block,
    random_chunks,
    thread_names,
    valid_retry_after,
    venv_site_packages,
    wait_until,
)

STARLETTE = "1.10.0"
DJANGO = "6.1.3"

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
PART = 64 * 1024  # the contract: bodies arrive in parts of at most 64 KiB
MAX_RSS_GROWTH_KIB = 25 * 1024  # half the body: a server holding it whole cannot pass


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = caddy_launcher.start(
        python_block("/raw/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw"), threads=3)
    )
    yield caddy
    caddy.stop()


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


# ------------------------------------------------------- frameworks next to WSGI


@pytest.fixture(scope="module")
def framework_venvs(make_venv):
    return {
        "starlette": make_venv("asgi-starlette", [f"starlette=={STARLETTE}"]),
        "django": make_venv("asgi-django", [f"Django=={DJANGO}"]),
    }


def test_each_interpreter_runs_its_event_loop_on_a_thread_named_for_top_and_perf(server):
    names = thread_names(server.pid)
    assert names.count("vv-asgi") == 1, names


def test_starlette_and_django_run_next_to_a_wsgi_app_in_own_gil_interpreters(
    start_caddy, framework_venvs, python_version
):
    server = start_caddy(
        "\n".join(
            [
                python_block(
                    "/star/*", module_asgi="starlette_app:app", lifespan="on",
                    working_dir=app_dir("asgi_starlette"), venv=framework_venvs["starlette"],
                ),
                python_block(
                    "/dj/*", module_asgi="djsite.asgi:application",
                    working_dir=app_dir("asgi_django"), venv=framework_venvs["django"],
                ),
                python_block("/wsgi/*", "probe:app", working_dir=app_dir("probe")),
            ]
        )
    )

    star = server.get_json("/star/info")
    assert star["framework"] == "starlette"
    assert star["version"] == STARLETTE
    star_site = os.path.realpath(venv_site_packages(framework_venvs["starlette"], python_version))
    assert os.path.realpath(star["file"]).startswith(star_site + os.sep), star
    assert star["root_path"] == "/star"
    assert star["url_for"] == f"{server.base_url}/star/info", star
    assert star["greeting"] == "hello from starlette lifespan", star
    assert star["gil"] == "own", star
    item = server.get("/star/items/42", params={"q": "z"})
    assert item.status_code == 200, item.text
    assert item.json() == {"n": 42, "q": "z"}
    assert server.get("/star/nowhere").status_code == 404

    async def starlette_websocket():
        async with ws_connect(f"ws://127.0.0.1:{server.http_port}/star/ws", open_timeout=20) as ws:
            await ws.send("hi")
            return await asyncio.wait_for(ws.recv(), 20)

    assert asyncio.run(starlette_websocket()) == "starlette:hi:hello from starlette lifespan"

    dj_async = server.get_json("/dj/async/")
    response = server.post("/dj/sync/", content=b"hi django")
    assert response.status_code == 200, f"{response.status_code} {response.text[:2000]}\n{log_excerpt(server)}"
    dj_sync = response.json()
    for view, info in (("async", dj_async), ("sync", dj_sync)):
        assert info["framework"] == "django"
        assert info["view"] == view
        assert info["version"] == DJANGO
        assert info["gil"] == "own", info
        assert info["script_name"] == "/dj", info
        assert info["path"] == f"/dj/{view}/", info
        assert info["path_info"] == f"/{view}/", info
        assert info["reverse"] == f"/dj/{view}/", info
    assert dj_sync["method"] == "POST"
    assert dj_sync["body"] == "hi django"
    assert dj_sync["pid"] == dj_async["pid"]
    assert dj_sync["interp_id"] == dj_async["interp_id"]
    dj_site = os.path.realpath(venv_site_packages(framework_venvs["django"], python_version))
    assert os.path.realpath(dj_async["file"]).startswith(dj_site + os.sep), dj_async
    assert server.get("/dj/nowhere/").status_code == 404

    wsgi = server.get_json("/wsgi/info")

    pids = {star["pid"], dj_async["pid"], wsgi["pid"]}
    assert pids == {server.pid}, pids
    ids = [star["interp_id"], dj_async["interp_id"], wsgi["interp_id"]]
    assert len(set(ids)) == 3, f"apps share an interpreter: starlette, django, wsgi = {ids}"
    assert 0 not in ids, f"an app runs in the main interpreter: {ids}"


# ------------------------------------------------------------------ the scope


def test_the_http_scope_describes_the_request(server):
    target = "/raw/scope/caf%C3%A9/a%2Fb%20c?x=1&y=%20z&x=2"
    request = (
        f"PUT {target} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.http_port}\r\n"
        "X-Custom-Thing: Value With Case\r\n"
        "X-Multi: one\r\n"
        "X-Multi: two\r\n"
        "Content-Length: 5\r\n"
        "Connection: close\r\n"
        "\r\n"
        "hello"
    ).encode()
    status, _, body, client_port = raw_request(server.http_port, request)
    assert status == 200, body[:2000]
    scope = json.loads(body)

    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "PUT"
    assert scope["scheme"] == "http"
    assert scope["root_path"] == "/raw"
    assert scope["path"] == "/raw/scope/café/a/b c", scope["path"]
    assert scope["raw_path"] == {"bytes": "/raw/scope/caf%C3%A9/a%2Fb%20c"}, scope["raw_path"]
    assert scope["query_string"] == {"bytes": "x=1&y=%20z&x=2"}
    assert scope["types"]["path"] == "str"
    assert scope["types"]["root_path"] == "str"
    assert scope["types"]["raw_path"] == "bytes"
    assert scope["types"]["query_string"] == "bytes"

    assert scope["header_types"] == ["bytes,bytes"]
    assert scope["header_is_pair"] is True
    names = [n["bytes"] for n, _ in scope["headers"]]
    assert names == [n.lower() for n in names], names
    assert header_values(scope, "host") == [f"127.0.0.1:{server.http_port}"]
    assert header_values(scope, "x-custom-thing") == ["Value With Case"]
    assert header_values(scope, "x-multi") == ["one", "two"]
    assert header_values(scope, "content-length") == ["5"]

    assert list(scope["client"]) == ["127.0.0.1", client_port]
    assert list(scope["server"]) == ["127.0.0.1", server.http_port]
    assert scope["body"] == "hello"


def test_an_http_1_0_request_has_http_version_1_0(server):
    request = f"GET /raw/scope HTTP/1.0\r\nHost: 127.0.0.1:{server.http_port}\r\n\r\n".encode()
    status, _, body, _ = raw_request(server.http_port, request)
    assert status == 200, body[:2000]
    scope = json.loads(body)
    assert scope["http_version"] == "1.0"
    assert scope["path"] == "/raw/scope"
    assert scope["raw_path"] == {"bytes": "/raw/scope"}
    assert scope["query_string"] == {"bytes": ""}


def test_without_a_matcher_root_path_is_empty_and_path_the_whole_path(start_caddy):
    other = start_caddy(python_block(None, module_asgi="raw_app:app", working_dir=app_dir("asgi_raw")))
    scope = other.get_json("/scope/x/y")
    assert scope["root_path"] == ""
    assert scope["path"] == "/scope/x/y"


def test_response_status_and_repeated_headers_reach_the_client(server):
    response = server.get("/raw/headers")
    assert response.status_code == 201
    assert response.content == b"created"
    assert response.headers["x-vivarium-test"] == "one"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]


# ------------------------------------------------------------------ request bodies


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


def test_the_app_reads_the_body_while_the_client_is_still_sending(server):
    """The client sends half its body, then waits until the app has received that half:
    a server that buffered the whole request before calling the app never gets there."""
    token = uuid.uuid4().hex
    half = b"a" * (2 * CHUNK)
    seen = {}

    def body():
        yield half
        with httpx.Client(base_url=server.base_url, timeout=10) as side:
            seen["progress"] = wait_until(
                lambda: side.get("/raw/report", params={"token": token}).json().get("bytes", 0)
                >= len(half),
                timeout=30,
            )
        yield half

    response = server.post(
        "/raw/body", params={"token": token}, content=body(),
        headers={"Content-Length": str(2 * len(half))},
    )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == 2 * len(half)
    assert seen.get("progress") is True, (
        "the app had not received the first half of the body while the client held the second"
    )


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


# --------------------------------------------------------------- streamed responses


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


# ---------------------------------------------------------------------- threads


def test_threads_sizes_the_event_loops_default_executor(server):
    # the module server has threads 3: six blocking tasks run three at a time
    report = server.get_json("/raw/executor", params={"tasks": 6})
    assert report["peak"] == 3, report
    assert report["threads"] == 3, report
    # the app's coroutines run on the interpreter's one event loop thread, not the executor
    loop_threads = {server.get_json("/raw/info")["thread"] for _ in range(5)}
    assert loop_threads == {report["loop_thread"]}, (loop_threads, report)


def test_an_app_with_two_interpreters_spreads_requests_over_both(start_caddy):
    other = start_caddy(
        python_block("/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw"), interpreters=2)
    )
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(other.get, "/slow", params={"s": 2, "token": first})
        assert other.wait_for_log(f"vivarium-asgi-slow-start {first}"), log_excerpt(other)
        b = pool.submit(other.get, "/slow", params={"s": 0.1, "token": second})
        ra, rb = a.result(), b.result()
    assert ra.status_code == rb.status_code == 200, (ra.text, rb.text)
    assert ra.json()["interp_id"] != rb.json()["interp_id"], (ra.json(), rb.json())


# ---------------------------------------------------------------------- a full queue



def test_past_max_queue_requests_get_503_with_retry_after(start_caddy):
    other = start_caddy(
        python_block("/q/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw"), max_queue=2)
    )
    slow = [uuid.uuid4().hex for _ in range(2)]
    burst = 5
    barrier = threading.Barrier(burst)

    def one(path, params, wait_for_others=False):
        with httpx.Client(base_url=other.base_url, timeout=60) as client:
            if wait_for_others:
                barrier.wait()
            return client.get(path, params=params)

    with ThreadPoolExecutor(2 + burst) as pool:
        running = [pool.submit(one, "/q/slow", {"s": 3, "token": t}) for t in slow]
        for token in slow:  # both are inside the app: 2 in flight, the queue is full
            assert other.wait_for_log(f"vivarium-asgi-slow-start {token}"), log_excerpt(other)
        refused = [pool.submit(one, "/q/info", {}, True) for _ in range(burst)]
        refused = [f.result() for f in refused]
        running = [f.result() for f in running]

    assert [r.status_code for r in running] == [200, 200], [r.text for r in running]
    assert [r.status_code for r in refused] == [503] * burst, [
        (r.status_code, r.text[:200]) for r in refused
    ]
    for response in refused:
        retry_after = response.headers.get("retry-after")
        assert retry_after is not None, dict(response.headers)
        assert valid_retry_after(retry_after), retry_after
    # once the slow ones are done, the app serves again
    assert other.get("/q/info").status_code == 200


# ---------------------------------------------------------------------- errors


def test_an_exception_before_response_start_gives_500_and_a_logged_traceback(server):
    token = uuid.uuid4().hex
    response = server.get("/raw/raise", params={"token": token})
    assert response.status_code == 500
    assert token not in response.text, "the traceback must not be sent to the client"
    message = f"vivarium-asgi-error before start {token}"
    assert server.wait_for_log(message), f"{message!r} not in the log:\n{log_excerpt(server)}"
    log = server.log_text()
    assert "Traceback (most recent call last)" in log
    assert "in explode_before_start" in log, "the traceback lacks the raising function"
    assert "ValueError" in log
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_exception_after_response_start_aborts_the_connection(server):
    token = uuid.uuid4().hex
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with server.client.stream("GET", "/raw/raise_after", params={"token": token}) as r:
            assert r.status_code == 200  # the head went out with the first body part
            r.read()  # must not end as if the body were complete
    message = f"vivarium-asgi-error after start {token}"
    assert server.wait_for_log(message), f"{message!r} not in the log:\n{log_excerpt(server)}"
    assert "in explode_after_start" in server.log_text()
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_app_returning_before_responding_gives_500(server):
    response = server.get("/raw/nothing")
    assert response.status_code == 500
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_app_returning_with_its_response_unfinished_aborts_the_connection(server):
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        with server.client.stream("GET", "/raw/unfinished") as r:
            assert r.status_code == 200
            r.read()
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_an_app_returning_after_response_start_alone_gives_500(server):
    """http.response.start without any body: the head is held until the first body
    part, so nothing went out and the server can still answer 500."""
    response = server.get("/raw/start_only")
    assert response.status_code == 500, (response.status_code, response.headers, response.text)
    assert server.get_json("/raw/info")["pid"] == server.pid


def test_many_failing_requests_leave_the_app_serving(server):
    for _ in range(20):
        assert server.get("/raw/raise", params={"token": "repeat"}).status_code == 500
    assert server.get_json("/raw/info")["pid"] == server.pid
    assert server.alive()
