"""Recycling an `isolation process` app: `max_memory SIZE` is the process's resident
memory (RSS) as the kernel counts it, and `max_requests N` (plus up to 10% jitter)
counts the requests it served. A process past either is replaced as a whole: a new
one starts, takes the new requests once it is ready, and the old one finishes every
request it has (a parked request, a stream, a WebSocket) before it stops. No request
fails on the way; each recycle is logged with its cause, shown in the admin API as a
recycle, not a crash, and counted by its directive in the metrics. Another app in the
same config keeps its process. A `max_memory` below the RSS of a fresh process turns
itself off instead of replacing one process after another.

App: tests/apps/controls (`/hog` holds resident memory, `/park` and `/parked` wait
for a file the test creates, the ASGI app echoes WebSocket messages with its pid)."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from controls_support import KINDS, block, info, log_entries
from support import admin_apps, proc_status, scrape, tail, wait_until

BOUND = 60
MIB = 1 << 20
PART = 64 << 10
LIMIT_MIB = 200  # well above a fresh process of the controls app, below one holding HOG_MIB
HOG_MIB = 250


def config(kind: str, **options) -> str:
    return "\n".join([
        block("/a/*", kind, isolation="process", name="recycled", **options),
        block("/other/*", kind, isolation="process", name="other"),
    ])


def processes(server, name: str) -> list[dict]:
    (instance,) = [i for i in admin_apps(server)[name]["instances"] if i["state"] == "serving"]
    return instance["processes"]


def alive(pid: int) -> bool:
    try:
        return proc_status(pid, "State")[0] != "Z"
    except OSError:
        return False


class Background:
    """A request run on a thread of its own, with its outcome kept."""

    def __init__(self, server, path: str, **params):
        self.result: dict = {}

        def run():
            with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
                try:
                    self.result["response"] = client.get(path, params=params)
                except httpx.HTTPError as exc:
                    self.result["error"] = repr(exc)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def response(self) -> httpx.Response:
        self.thread.join(BOUND)
        assert "response" in self.result, self.result
        return self.result["response"]


class Hammer:
    """Clients requesting `path` one after another until stopped; every response kept."""

    def __init__(self, server, path: str, clients: int = 3):
        self.stop = threading.Event()
        self.responses: list[httpx.Response | str] = []
        self.threads = [threading.Thread(target=self.run, args=(server, path)) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self, server, path):
        with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
            while not self.stop.is_set():
                try:
                    self.responses.append(client.get(path))
                except httpx.HTTPError as exc:
                    self.responses.append(repr(exc))

    def finish(self) -> list:
        self.stop.set()
        for t in self.threads:
            t.join(BOUND)
        return self.responses


def began_on(server, route: str, file: str) -> int | None:
    """The pid of the process whose app printed that it began `route` waiting for file."""
    entries = log_entries(server, f"controls: {route} begins {file}")
    return entries[0].get("pid") if entries else None


@pytest.mark.parametrize("kind", KINDS)
def test_max_memory_replaces_the_process_after_it_finished_its_requests(start_caddy, kind, tmp_path):
    server = start_caddy(config(kind, max_memory=f"{LIMIT_MIB}MiB"))
    old = info(server, "/a")["pid"]
    other = info(server, "/other")["pid"]
    release = str(tmp_path / f"release-{uuid.uuid4().hex}")

    # In flight on the old process: a parked request, a stream after its first part
    # and, for ASGI, a WebSocket.
    parked = Background(server, "/a/park", file=release)
    stream = Background(server, "/a/parked", file=release, parts=8)
    assert wait_until(lambda: began_on(server, "/park", release) and began_on(server, "/parked", release),
                      timeout=BOUND), tail(server.log_text())
    assert began_on(server, "/park", release) == old and began_on(server, "/parked", release) == old
    sockets = contextlib.ExitStack()
    socket = None
    if kind == "asgi":
        socket = sockets.enter_context(ws_connect(f"ws://127.0.0.1:{server.http_port}/a/echo", open_timeout=BOUND))
        socket.send("before")
        assert socket.recv(timeout=BOUND) == f"{old} before"

    hammer = Hammer(server, "/a/info")
    hog = server.get("/a/hog", params={"mb": HOG_MIB})
    assert hog.status_code == 200 and hog.json()["pid"] == old, hog.text

    def replaced():
        procs = processes(server, "recycled")
        serving = [p for p in procs if p["state"] == "serving"]
        draining = [p for p in procs if p["state"] == "draining"]
        return serving and serving[0]["pid"] != old and draining and (serving[0], draining[0])

    found = wait_until(replaced, timeout=BOUND, interval=0.2)
    assert found, (processes(server, "recycled"), tail(server.log_text()))
    serving, draining = found
    new = serving["pid"]
    assert draining["pid"] == old and draining["process"] == 0, draining
    assert draining["in_flight"] >= 2, draining
    assert draining["rss_bytes"] > LIMIT_MIB * MIB, draining
    assert serving["restarts"] == 0 and serving["recycles"] == 1, serving
    assert serving["last_recycle"]["pid"] == old and "max_memory" in serving["last_recycle"]["cause"], serving
    assert "last_exit" not in serving, serving

    (entry,) = log_entries(server, "recycling the app's process: max_memory")
    assert entry["app"] == "recycled" and entry["pid"] == old, entry
    assert entry["max_memory"] == LIMIT_MIB * MIB and entry["rss_bytes"] > LIMIT_MIB * MIB, entry
    assert f"max_memory {LIMIT_MIB}.0 MiB exceeded: its RSS is" in entry["msg"], entry

    # New requests go to the new process while the old one finishes its own.
    assert wait_until(lambda: info(server, "/a")["pid"] == new, timeout=BOUND)
    assert alive(old)
    if socket is not None:
        socket.send("during")
        assert socket.recv(timeout=BOUND) == f"{old} during"
        with ws_connect(f"ws://127.0.0.1:{server.http_port}/a/echo", open_timeout=BOUND) as fresh_socket:
            fresh_socket.send("new")
            assert fresh_socket.recv(timeout=BOUND) == f"{new} new"
    sockets.close()

    open(release, "w").close()
    assert parked.response().status_code == 200 and parked.response().json() == {"pid": old}
    streamed = stream.response()
    assert streamed.status_code == 200 and streamed.content == b"p" * (8 * PART), len(streamed.content)

    assert wait_until(lambda: not alive(old), timeout=BOUND), "the old process did not stop after its requests"
    assert wait_until(lambda: log_entries(server, "app process recycled"), timeout=BOUND), tail(server.log_text())
    (done,) = log_entries(server, "app process recycled")
    assert done["pid"] == old and done["new_pid"] == new, done
    responses = hammer.finish()
    failed = [r if isinstance(r, str) else (r.status_code, r.text) for r in responses
              if isinstance(r, str) or r.status_code != 200]
    assert responses and not failed, failed[:5]
    assert {r.json()["pid"] for r in responses} <= {old, new}

    assert wait_until(lambda: [(p["pid"], p["state"]) for p in processes(server, "recycled")] == [(new, "serving")],
                      timeout=BOUND), processes(server, "recycled")
    assert info(server, "/other")["pid"] == other
    assert [(p["restarts"], p["recycles"]) for p in processes(server, "other")] == [(0, 0)]
    assert not log_entries(server, "its requests in flight got 502")
    metrics = scrape(server)
    assert metrics.value("vivarium_restarts_total", app="recycled", reason="max_memory") == 1
    assert metrics.get("vivarium_restarts_total", app="recycled", reason="crash") is None
    assert metrics.value("vivarium_processes_up", app="recycled") == 1


@pytest.mark.parametrize("kind", KINDS)
def test_max_requests_replaces_the_process_without_failing_a_request(start_caddy, kind):
    server = start_caddy(config(kind, max_requests=20))
    other = info(server, "/other")["pid"]
    hammer = Hammer(server, "/a/info", clients=4)
    recycled = wait_until(lambda: len(log_entries(server, "app process recycled")) >= 2, timeout=BOUND, interval=0.2)
    responses = hammer.finish()
    assert recycled, tail(server.log_text())

    failed = [r if isinstance(r, str) else (r.status_code, r.text) for r in responses
              if isinstance(r, str) or r.status_code != 200]
    assert not failed, failed[:5]
    assert len({r.json()["pid"] for r in responses}) >= 3
    started = log_entries(server, "recycling the app's process: max_requests 20 reached")
    assert len(started) >= 2, tail(server.log_text())
    # max_requests plus its jitter, up to 10%, drawn for each process; requests in
    # flight as the replacement starts finish there too
    for e in started:
        assert 20 <= e["max_requests"] <= 22 and e["served"] >= e["max_requests"], e
        assert f"max_requests 20 reached: {e['max_requests']} requests served" in e["msg"], e
    # The process itself recycles nothing in place: Caddy replaces it whole.
    assert not log_entries(server, "recycling an interpreter")
    (proc,) = [p for p in processes(server, "recycled") if p["state"] == "serving"]
    assert proc["restarts"] == 0 and proc["recycles"] >= 2, proc
    assert scrape(server).value("vivarium_restarts_total", app="recycled", reason="max_requests") >= 2
    assert info(server, "/other")["pid"] == other


def test_websockets_still_open_after_the_grace_are_closed_with_1001(start_caddy):
    # The grace of a stop is the app's timeout.
    server = start_caddy(config("asgi", max_requests=3, timeout="2s"))
    old = info(server, "/a")["pid"]
    with ws_connect(f"ws://127.0.0.1:{server.http_port}/a/echo", open_timeout=BOUND) as socket:
        for _ in range(3):
            assert server.get("/a/info").status_code == 200
        assert wait_until(lambda: info(server, "/a")["pid"] != old, timeout=BOUND)
        socket.send("still here")
        assert socket.recv(timeout=BOUND) == f"{old} still here"
        with pytest.raises(Exception) as closed:
            socket.recv(timeout=BOUND)
        assert socket.close_code == 1001, (closed.value, socket.close_code)
    assert wait_until(lambda: not alive(old), timeout=BOUND)
    assert not log_entries(server, "its requests in flight got 502")


@pytest.mark.parametrize("kind", KINDS)
def test_max_memory_below_a_fresh_processs_rss_turns_itself_off(start_caddy, kind):
    server = start_caddy(config(kind, max_memory="1MiB"))
    assert wait_until(lambda: log_entries(server, "below the RSS of a freshly started process"), timeout=BOUND), (
        tail(server.log_text()))
    pid = info(server, "/a")["pid"]
    for _ in range(20):
        assert server.get("/a/hog", params={"mb": 1}).status_code == 200
    time.sleep(3)  # memory is read once a second: a few reads later, the same process serves
    assert info(server, "/a")["pid"] == pid, "it went on recycling"
    (entry,) = log_entries(server, "below the RSS of a freshly started process")
    assert entry["app"] == "recycled" and "raise max_memory" in entry["msg"], entry
    assert not log_entries(server, "recycling the app's process")
    assert [p["recycles"] for p in processes(server, "recycled")] == [0]


@pytest.mark.parametrize("kind", KINDS)
def test_of_two_processes_only_the_one_past_max_memory_is_replaced(start_caddy, kind):
    server = start_caddy(config(kind, max_memory=f"{LIMIT_MIB}MiB", interpreters=2))
    before = {p["process"]: p["pid"] for p in processes(server, "recycled")}
    assert len(set(before.values())) == 2, before
    hog = server.get("/a/hog", params={"mb": HOG_MIB})
    assert hog.status_code == 200, hog.text
    grown = hog.json()["pid"]
    (slot,) = [index for index, pid in before.items() if pid == grown]

    def replaced():
        now = {p["process"]: p["pid"] for p in processes(server, "recycled") if p["state"] == "serving"}
        return len(now) == 2 and now[slot] != grown and now
    now = wait_until(replaced, timeout=BOUND, interval=0.2)
    assert now, (processes(server, "recycled"), tail(server.log_text()))
    assert now[1 - slot] == before[1 - slot], "the other process was replaced too"
    assert wait_until(lambda: not alive(grown), timeout=BOUND)
    assert wait_until(lambda: len(processes(server, "recycled")) == 2, timeout=BOUND), processes(server, "recycled")
    assert [p["recycles"] for p in sorted(processes(server, "recycled"), key=lambda p: p["process"])] == (
        [1, 0] if slot == 0 else [0, 1])
