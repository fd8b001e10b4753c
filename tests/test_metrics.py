"""Metrics on Caddy's Prometheus registry, scraped from the admin endpoint's /metrics
and parsed with prometheus_client: after a known sequence of requests, refusals,
restarts and reloads, every counter and gauge has the value that sequence gives."""

import asyncio
import threading
import time

import httpx
import pytest
from websockets.asyncio.client import connect

from support import admin_restart, app_dir, python_block, scrape, wait_until

KINDS = ["wsgi", "asgi"]
CLASSES = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"]


def block(kind, matcher, name, **options):
    """A block serving tests/apps/metrics_app as `kind` ("wsgi" or "asgi")."""
    module = {f"module_{kind}": f"metrics_app:{kind}"}
    return python_block(matcher, **module, working_dir=app_dir("metrics_app"), name=name, **options)


def by_class(metrics, app):
    return {c: metrics.value("vivarium_requests_total", app=app, **{"class": c}) for c in CLASSES}


def histogram(metrics, name, app):
    """(count, sum, {le: cumulative count}) of a histogram."""
    buckets = {
        dict(labels)["le"]: value for labels, value in metrics.matching(f"{name}_bucket", app=app).items()
    }
    return metrics.value(f"{name}_count", app=app), metrics.value(f"{name}_sum", app=app), buckets


def check_histogram_shape(count, buckets):
    ordered = sorted(buckets.items(), key=lambda item: float(item[0]))
    values = [v for _, v in ordered]
    assert values == sorted(values), f"buckets are not cumulative: {ordered}"
    assert ordered[-1][0] == "+Inf" and ordered[-1][1] == count, ordered


@pytest.mark.parametrize("kind", KINDS)
def test_requests_are_counted_by_status_class_with_their_durations(start_caddy, kind):
    server = start_caddy(
        block(kind, "/m/*", "m", interpreters=2, threads=3)
        + "\nhandle /site-metrics {\n\tmetrics\n}"
    )
    before = scrape(server)
    assert by_class(before, "m") == {c: 0 for c in CLASSES}

    sequence = (["/m/ok"] * 5 + ["/m/status?code=204"] + ["/m/status?code=302"] * 2
                + ["/m/status?code=404"] * 3 + ["/m/fail", "/m/status?code=503"])
    for path in sequence:
        server.get(path, follow_redirects=False)

    after = scrape(server)
    assert by_class(after, "m") == {"none": 0, "1xx": 0, "2xx": 6, "3xx": 2, "4xx": 3, "5xx": 2}
    # The app's own 503 is an answer, not a refusal.
    assert after.value("vivarium_rejected_total", app="m") == 0
    count, total, buckets = histogram(after, "vivarium_request_duration_seconds", "m")
    assert count == len(sequence)
    assert total > 0
    check_histogram_shape(count, buckets)
    # Every WSGI request is timed in the queue, at 0 when a thread took it at once;
    # ASGI requests have no queue.
    wait_count, _, wait_buckets = histogram(after, "vivarium_queue_wait_seconds", "m")
    assert wait_count == (len(sequence) if kind == "wsgi" else 0)
    check_histogram_shape(wait_count, wait_buckets)

    assert after.value("vivarium_interpreters_up", app="m") == 2
    assert after.value("vivarium_interpreters_draining", app="m") == 0
    assert after.value("vivarium_queue_depth", app="m") == 0
    assert after.value("vivarium_requests_in_flight", app="m") == 0
    assert after.value("vivarium_restarts_total", app="m", reason="admin") == 0
    assert after.value("vivarium_websockets_open", app="m") == 0
    threads = after.matching("vivarium_threads", app="m")
    limits = after.matching("vivarium_concurrency_limit", app="m")
    if kind == "wsgi":
        interpreters = {dict(labels)["interpreter"] for labels in threads}
        assert len(interpreters) == 2
        for interp in interpreters:
            assert after.value("vivarium_threads", app="m", interpreter=interp, state="busy") == 0
            assert after.value("vivarium_threads", app="m", interpreter=interp, state="idle") == 3
            assert 1 <= after.value("vivarium_concurrency_limit", app="m", interpreter=interp) <= 3
    else:
        assert threads == {} and limits == {}

    # The same registry behind Caddy's `metrics` handler.
    site = server.get("/site-metrics")
    assert site.status_code == 200
    assert 'vivarium_requests_total{app="m",class="2xx"} 6' in site.text


def start_in_thread(server, path, results):
    def run():
        with httpx.Client(base_url=server.base_url, timeout=120) as client:
            results.append(client.get(path))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_app_answers_503_and_counts_each_refusal(start_caddy, kind):
    # WSGI: one thread and room for one request in the queue. ASGI: two in flight.
    options = {"threads": 1, "max_queue": 1} if kind == "wsgi" else {"max_queue": 2}
    server = start_caddy(block(kind, "/m/*", "m", **options))
    sleep = 5
    results = []
    sent = time.monotonic()
    first = start_in_thread(server, f"/m/sleep?s={sleep}", results)
    assert wait_until(lambda: scrape(server).value("vivarium_requests_in_flight", app="m") == 1, timeout=30)
    if kind == "wsgi":
        assert sum(scrape(server).matching("vivarium_threads", app="m", state="busy").values()) == 1
    # WSGI: it waits in the queue for the one thread; ASGI: it runs beside the first.
    second = start_in_thread(server, "/m/sleep?s=0" if kind == "wsgi" else f"/m/sleep?s={sleep}", results)
    assert wait_until(lambda: scrape(server).value("vivarium_requests_in_flight", app="m") == 2, timeout=30)
    queued_seen = time.monotonic()

    refused = 4
    for _ in range(refused):
        response = server.get("/m/ok")
        assert response.status_code == 503
        assert response.headers.get("Retry-After") == "1"
    full = scrape(server)
    assert full.value("vivarium_rejected_total", app="m") == refused
    assert by_class(full, "m")["5xx"] == refused
    assert full.value("vivarium_queue_depth", app="m") == (1 if kind == "wsgi" else 0)

    first.join(60)
    second.join(60)
    assert [r.status_code for r in results] == [200, 200]
    done = scrape(server)
    assert by_class(done, "m") == {"none": 0, "1xx": 0, "2xx": 2, "3xx": 0, "4xx": 0, "5xx": refused}
    # Refusals are not timed: only the two answered requests are.
    assert done.value("vivarium_request_duration_seconds_count", app="m") == 2
    assert done.value("vivarium_queue_depth", app="m") == 0
    if kind == "wsgi":
        count, total, _ = histogram(done, "vivarium_queue_wait_seconds", "m")
        assert count == 2
        # The second request could start only once the first had slept: it was queued
        # before queued_seen and the first started after `sent`.
        assert total >= sleep - (queued_seen - sent) - 0.01


@pytest.mark.parametrize("kind", KINDS)
def test_counters_survive_restarts_and_reloads(start_caddy, kind):
    config = block(kind, "/m/*", "m", interpreters=2)
    server = start_caddy(config)
    for _ in range(3):
        assert server.get("/m/ok").status_code == 200

    assert admin_restart(server, "m").status_code == 200
    restarted = scrape(server)
    assert restarted.value("vivarium_restarts_total", app="m", reason="admin") == 1
    assert by_class(restarted, "m")["2xx"] == 3
    assert restarted.value("vivarium_interpreters_up", app="m") == 2
    assert restarted.value("vivarium_interpreters_draining", app="m") == 0
    for _ in range(2):
        assert server.get("/m/ok").status_code == 200

    server.reload(config, force=True)
    reloaded = scrape(server)
    assert by_class(reloaded, "m")["2xx"] == 5
    assert reloaded.value("vivarium_restarts_total", app="m", reason="admin") == 1
    assert reloaded.value("vivarium_interpreters_up", app="m") == 2
    assert server.get("/m/ok").status_code == 200
    assert by_class(scrape(server), "m")["2xx"] == 6

    # A reload that drops the name drops its series; the new name starts at zero.
    server.reload(block(kind, "/m/*", "renamed", interpreters=2))
    renamed = scrape(server)
    assert renamed.matching("vivarium_requests_total", app="m") == {}
    assert by_class(renamed, "renamed") == {c: 0 for c in CLASSES}


def test_open_websockets_are_a_gauge(start_caddy):
    server = start_caddy(block("asgi", "/m/*", "m"))
    url = f"ws://127.0.0.1:{server.http_port}/m/ws"

    async def hold_three_open():
        sockets = [await connect(url, open_timeout=30) for _ in range(3)]
        for i, ws in enumerate(sockets):
            await ws.send(f"hello {i}")
            assert await asyncio.wait_for(ws.recv(), 30) == f"hello {i}"
        opened = scrape(server)
        for ws in sockets:
            await ws.close()
        return opened

    opened = asyncio.run(hold_three_open())
    assert opened.value("vivarium_websockets_open", app="m") == 3
    assert opened.value("vivarium_requests_in_flight", app="m") == 3
    # A request is counted when it ends, a WebSocket too.
    assert by_class(opened, "m")["1xx"] == 0
    assert wait_until(lambda: scrape(server).value("vivarium_websockets_open", app="m") == 0, timeout=30)
    closed = scrape(server)
    assert by_class(closed, "m")["1xx"] == 3
    # WebSockets are not in the request duration histogram.
    assert closed.value("vivarium_request_duration_seconds_count", app="m") == 0


def test_memory_is_reported_per_interpreter_with_an_allocator_of_its_own(start_caddy):
    server = start_caddy("\n".join([
        block("wsgi", "/a/*", "a"),
        block("wsgi", "/b/*", "b"),
        block("wsgi", "/s/*", "s", isolation="shared"),
    ]))
    before = scrape(server)
    arenas_a = before.matching("vivarium_interpreter_arena_bytes", app="a")
    arenas_b = before.matching("vivarium_interpreter_arena_bytes", app="b")
    assert len(arenas_a) == 1 and len(arenas_b) == 1
    assert all(v > 0 for v in [*arenas_a.values(), *arenas_b.values()])
    # A shared interpreter uses the main interpreter's allocator: no figure of its own.
    assert before.matching("vivarium_interpreter_arena_bytes", app="s") == {}

    grown = server.get_json("/a/grow?mb=32")
    after = scrape(server)
    growth_a = sum(after.matching("vivarium_interpreter_arena_bytes", app="a").values()) - sum(arenas_a.values())
    growth_b = sum(after.matching("vivarium_interpreter_arena_bytes", app="b").values()) - sum(arenas_b.values())
    assert growth_a >= 16 * 2**20, f"a kept {grown['kept']} objects but its arenas grew by {growth_a} bytes"
    assert abs(growth_b) < 4 * 2**20, f"b did nothing, yet its arenas changed by {growth_b} bytes"
