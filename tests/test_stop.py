"""Stopping an app on `caddy reload`: responses under way finish (a WSGI stream, an
ASGI stream, requests waiting for the app's only thread); ASGI lifespan shutdown runs
only once the stream has ended; open WebSockets are closed with 1001 (going away);
threads the app started are waited for a grace period, and an interpreter whose
threads never end is left alive (with an error naming them) rather than hanging
every later reload."""

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support import app_dir, python_block, tail, wait_until

WSGI_APP = app_dir("stop_wsgi")
ASGI_APP = app_dir("stop_asgi")
THREADS_APP = app_dir("stop_threads")

LINES = 10  # streamed lines / events
GAP = 0.2  # seconds between them
TIMEOUT = 60  # bound on any one HTTP exchange or reload (a hang guard, not a timing check)

FOREVER_THREAD = "vivarium-stop-forever-thread"  # tests/apps/stop_threads/forever.py
CRASH_SIGNS = ("Fatal Python error", "munmap_chunk", "panic:", "SIGSEGV", "SIGABRT")


def wsgi_block(**options):
    return python_block("/*", "stop_wsgi_app:app", working_dir=WSGI_APP, **options)


def asgi_block():
    return python_block(
        "/*", module_asgi="stop_asgi_app:app", lifespan="on", working_dir=ASGI_APP
    )


def threads_block(module):
    return python_block("/*", f"{module}:app", working_dir=THREADS_APP)


def reload_in_background(pool, server, body):
    """Starts `caddy reload --force` on a pool thread. check=False: a failure is
    asserted by the caller, on the test's thread."""
    return pool.submit(server.reload, body, force=True, check=False)


def assert_reloaded(server, done):
    assert done.returncode == 0, (
        f"caddy reload failed with code {done.returncode}:\n{done.stdout}{done.stderr}\n"
        f"--- log\n{tail(server.log_text())}"
    )


def load_requests(server):
    """Log lines of the admin API receiving a new config (one per reload)."""
    return [line for line, _ in server.log_entries_containing("/load") if "received request" in line]


def log_index(log, needle):
    """Index of the first log line containing `needle` (the log is in write order)."""
    for number, line in enumerate(log.splitlines()):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} is not in the log:\n{tail(log)}")


# ------------------------------------------------------------ responses under way finish


def test_a_wsgi_stream_under_way_is_completed_across_a_reload(start_caddy):
    server = start_caddy(wsgi_block())
    old = server.get_json("/instance")["instance"]
    loads_before = len(load_requests(server))
    lines = []
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as client:
        with client.stream("GET", "/stream", params={"n": LINES, "gap": GAP}) as response:
            assert response.status_code == 200
            reload = None
            for line in response.iter_lines():  # raises if the body is cut short
                lines.append(line)
                if reload is None:
                    reload = reload_in_background(pool, server, wsgi_block())
            # the new config reached the server while the stream was still running
            loads_during_stream = len(load_requests(server))
        assert_reloaded(server, reload.result(timeout=TIMEOUT))

    assert lines == [f"line {i} {old}" for i in range(LINES)] + ["end"], lines
    assert loads_during_stream == loads_before + 1, (
        f"the reload did not overlap the stream:\n{tail(server.log_text())}"
    )
    new = server.get_json("/instance")["instance"]
    assert new != old, "a forced reload must serve a newly imported instance"
    assert server.alive()


def test_an_asgi_stream_is_completed_across_a_reload_before_lifespan_shutdown(start_caddy):
    server = start_caddy(asgi_block())
    old = server.get_json("/instance")["instance"]
    token = uuid.uuid4().hex
    events = []
    with ThreadPoolExecutor(1) as pool, httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as client:
        with client.stream(
            "GET", "/sse", params={"n": LINES, "gap": GAP, "token": token}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            reload = None
            for line in response.iter_lines():  # raises if the body is cut short
                if line:
                    events.append(line)
                if reload is None:
                    reload = reload_in_background(pool, server, asgi_block())
        assert_reloaded(server, reload.result(timeout=TIMEOUT))

    assert events == [f"data: {i}" for i in range(LINES)], events
    last_sent = f"vivarium-stop last event sent {token} {old}"
    shutdown = f"vivarium-stop lifespan shutdown {old}"
    assert server.wait_for_log(shutdown), (
        f"the old instance's lifespan shutdown did not run:\n{tail(server.log_text())}"
    )
    log = server.log_text()
    assert log_index(log, last_sent) < log_index(log, shutdown), (
        f"lifespan shutdown ran before the stream's last event was sent:\n{tail(log)}"
    )
    new = server.get_json("/instance")["instance"]
    assert new != old
    assert f"vivarium-stop lifespan shutdown {new}" not in server.log_text()


def test_requests_waiting_for_the_only_thread_are_answered_across_a_reload(start_caddy):
    server = start_caddy(wsgi_block(interpreters=1, threads=1))
    old = server.get_json("/instance")["instance"]
    tokens = [uuid.uuid4().hex for _ in range(3)]

    def slow(token):
        with httpx.Client(base_url=server.base_url, timeout=TIMEOUT) as client:
            return client.get("/slow", params={"s": 1, "token": token})

    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(slow, token) for token in tokens]
        # one request runs on the only thread, the other two wait for it
        assert server.wait_for_log("vivarium-stop slow begin"), tail(server.log_text())
        time.sleep(0.3)  # lets all three requests reach the server before the reload
        assert_reloaded(server, server.reload(wsgi_block(interpreters=1, threads=1), force=True, check=False))
        responses = [answer.result(timeout=TIMEOUT) for answer in answers]

    for token, response in zip(tokens, responses):
        assert response.status_code == 200, (
            f"{response.status_code} {response.text[:500]}\n{tail(server.log_text())}"
        )
        # answered by the instance they were queued for, before it was stopped
        assert response.text == f"slept {token} {old}", response.text
    new = server.get_json("/instance")["instance"]
    assert new != old


# ------------------------------------------------------------------------- WebSockets


def test_an_open_websocket_is_closed_with_going_away_on_reload(start_caddy):
    server = start_caddy(asgi_block())
    url = f"ws://127.0.0.1:{server.http_port}/ws"

    async def scenario():
        async with connect(url, open_timeout=TIMEOUT) as ws:
            await ws.send("before")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "before"
            reload = asyncio.create_task(
                asyncio.to_thread(server.reload, asgi_block(), force=True, check=False)
            )
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            done = await reload
        assert_reloaded(server, done)
        assert closed.value.rcvd is not None, f"no close frame from the server: {closed.value!r}"
        assert closed.value.rcvd.code == 1001, closed.value.rcvd

        # the new instance accepts WebSockets
        async with connect(url, open_timeout=TIMEOUT) as ws:
            await ws.send("after")
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "after"

    asyncio.run(scenario())


# ---------------------------------------------------------------- threads of the app


def test_a_thread_that_never_ends_leaves_its_interpreter_alive_without_blocking_reloads(
    caddy_launcher,
):
    server = caddy_launcher.start(threads_block("forever"))
    first = server.get_json("/instance")
    assert first["thread"] == FOREVER_THREAD and first["thread_alive"], first

    started = time.monotonic()
    server.reload(threads_block("forever"), force=True)
    took = time.monotonic() - started
    # the stop waits a 5 s grace for the app's threads, then gives up on them
    assert took < 12, f"the reload took {took:.1f} s:\n{tail(server.log_text())}"

    second = server.get_json("/instance")
    assert second["instance"] != first["instance"], "the new instance does not serve"
    assert second["thread_alive"], second
    stuck = server.log_entries_containing("left alive")
    assert len(stuck) == 1, f"expected one 'left alive' error:\n{tail(server.log_text())}"
    line, entry = stuck[0]
    assert FOREVER_THREAD in line, line
    if entry is not None:
        assert entry["level"] == "error", entry
    else:
        assert "ERROR" in line, line

    # the thread that creates and ends interpreters is not stuck: a further reload
    # (which stops the second instance, whose thread never ends either) still works
    server.reload(threads_block("plain"))
    third = server.get_json("/instance")
    assert third["thread"] is None, third
    assert third["instance"] not in (first["instance"], second["instance"])
    assert wait_until(lambda: len(server.log_entries_containing("left alive")) == 2), (
        tail(server.log_text())
    )
    assert all(FOREVER_THREAD in line for line, _ in server.log_entries_containing("left alive"))

    code = server.stop()
    log = server.log_text()
    assert code == 0, f"exit code {code} after SIGTERM:\n{tail(log)}"
    for sign in CRASH_SIGNS:
        assert sign not in log, f"{sign!r} in the log:\n{tail(log)}"


def test_a_thread_that_ends_soon_after_the_stop_lets_the_interpreter_end(start_caddy):
    server = start_caddy(threads_block("brief"))
    first = server.get_json("/instance")
    # the thread runs 2 s from import: it is still running when the reload stops the app
    assert first["thread_alive"], first

    server.reload(threads_block("brief"), force=True)

    assert server.wait_for_log(f"vivarium-stop brief thread done {first['instance']}"), (
        tail(server.log_text())
    )
    second = server.get_json("/instance")
    assert second["instance"] != first["instance"]
    # the old interpreter was ended: as many interpreters as before the reload
    assert wait_until(
        lambda: server.get_json("/instance")["interp_count"] == first["interp_count"]
    ), (first, server.get_json("/instance"))
    assert "left alive" not in server.log_text(), tail(server.log_text())
