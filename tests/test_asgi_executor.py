"""The ASGI event loop's executor, apps over several interpreters, and 503 past
max_queue."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from support import app_dir, python_block, valid_retry_after
from asgi_support import log_excerpt, start_raw_server


@pytest.fixture(scope="module")
def server(caddy_launcher):
    caddy = start_raw_server(caddy_launcher)
    yield caddy
    caddy.stop()


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
