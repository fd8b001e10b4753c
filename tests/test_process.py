"""`isolation process`: an app in child processes of Caddy (the same binary), each
hosting the app in its own main interpreter; requests reach them over a socket as the
packed data the in-process threads get. A child that dies is logged, its requests get
502, and it is restarted; reload and stop leave no child behind.

Apps: tests/apps/process_app (standard library, WSGI `application` and ASGI `app`),
streaming (WSGI), asgi_raw and asgi_ws (ASGI), and the FastAPI, Flask and Django apps
with their pinned venvs (app_requirements.py).
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from support import (
    Caddy,
    RssSampler,
    admin_apps,
    admin_restart,
    app_dir,
    post_streamed_upload,
    proc_status,
    python_block,
    random_chunks,
    scrape,
    tail,
    wait_until,
)

SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_RSS_GROWTH_KIB = 25 * 1024  # half the body: a process holding it whole cannot pass


# ----------------------------------------------------------------------- helpers


def children_of(pid: int) -> list[int]:
    """The pids of the live processes whose parent is pid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(proc_status(int(entry), "PPid")) == pid and proc_status(int(entry), "State")[0] != "Z":
                found.append(int(entry))
        except (OSError, KeyError):
            continue
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        return proc_status(pid, "State")[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return [part.decode() for part in fh.read().split(b"\0") if part]


def rss_kib(pid: int) -> int:
    return int(proc_status(pid, "VmRSS").split()[0])


def process_block(matcher: str, kind: str, **options) -> str:
    """A block for tests/apps/process_app in isolation process."""
    entry = {"module_wsgi": "process_app:application"} if kind == "wsgi" else {"module_asgi": "process_app:app"}
    options.setdefault("working_dir", app_dir("process_app"))
    return python_block(matcher, **entry, isolation="process", **options)


def concurrently(fn, args_list):
    with ThreadPoolExecutor(len(args_list)) as pool:
        return list(pool.map(fn, args_list))


@pytest.fixture(params=["wsgi", "asgi"])
def kind(request):
    return request.param


# ------------------------------------------------------------ serving from children


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def two_processes(request, caddy_launcher):
    """process_app with interpreters 2, beside the stdlib probe in an own-GIL interpreter."""
    body = "\n".join(
        [
            process_block("/p/*", request.param, interpreters=2),
            python_block("/probe/*", "probe:app", working_dir=app_dir("probe")),
        ]
    )
    caddy = caddy_launcher.start(body)
    caddy.kind = request.param
    yield caddy
    caddy.stop()


def test_each_process_is_a_child_of_caddy_running_the_app_in_its_main_interpreter(two_processes):
    caddy = two_processes

    def sleeper(_):
        return caddy.get_json("/p/sleep", params={"s": "0.5"})["pid"]

    # Two requests at once go to the two processes.
    pids = set(concurrently(sleeper, [0, 1]))
    assert len(pids) == 2, pids
    assert sorted(pids) == children_of(caddy.pid), (pids, children_of(caddy.pid))
    for pid in pids:
        assert pid != caddy.pid
        assert cmdline(pid)[1:] == ["python-worker"], cmdline(pid)
    info = caddy.get_json("/p/info")
    assert info["ppid"] == caddy.pid and info["pid"] in pids, info
    assert info["interp_id"] == 0, info
    assert "VIVARIUM_PARENT_PID" not in info["vivarium_env"], "the child's own variable reached the app"
    # The in-process app still runs in Caddy's own process.
    assert caddy.get_json("/probe/info")["pid"] == caddy.pid


def test_wsgi_multiprocess_is_true_when_other_processes_run_the_app(two_processes):
    if two_processes.kind != "wsgi":
        return
    assert two_processes.get_json("/p/info")["multiprocess"] is True


def test_what_the_app_prints_reaches_caddys_log_tagged_with_the_app_and_the_pid(two_processes):
    caddy = two_processes
    text = "vivarium-process-print-" + uuid.uuid4().hex
    pid = caddy.get_json("/p/info")["pid"]
    assert caddy.get_json("/p/print", params={"text": text}) == {"printed": True}
    assert caddy.wait_for_log(text), tail(caddy.log_text())
    entries = [e for _, e in caddy.log_entries_containing(text) if e and e.get("msg") == text]
    assert entries, caddy.log_entries_containing(text)
    entry = entries[0]
    assert entry["module"] == ("process_app:application" if caddy.kind == "wsgi" else "process_app:app"), entry
    assert entry["app"].endswith("-p"), entry  # the block's name: site and matcher
    assert entry["stream"] == "stdout" and entry["level"] == "info", entry
    assert entry["pid"] == pid, entry


def test_a_process_app_needs_no_python_in_caddy_itself(start_caddy):
    """With only process apps, Caddy's own process never starts CPython."""
    caddy = start_caddy(process_block("/p/*", "wsgi"))
    assert caddy.get_json("/p/info")["ppid"] == caddy.pid
    names = sorted(os.listdir(f"/proc/{caddy.pid}/task"))
    comms = []
    for task in names:
        with open(f"/proc/{caddy.pid}/task/{task}/comm") as fh:
            comms.append(fh.read().strip())
    assert "vv-wsgi" not in comms and "vv-asgi" not in comms, comms


# ----------------------------------------------------------- streaming, both ways


@pytest.fixture(scope="module")
def streaming(caddy_launcher):
    body = "\n".join(
        [
            python_block("/w/*", "stream_app:app", working_dir=app_dir("streaming"), isolation="process"),
            python_block("/a/*", module_asgi="raw_app:app", working_dir=app_dir("asgi_raw"), isolation="process"),
            python_block("/ws/*", module_asgi="ws_app:app", working_dir=app_dir("asgi_ws"), isolation="process"),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield caddy
    caddy.stop()


UPLOADS = {"wsgi": "/w/upload", "asgi": "/a/body"}
DOWNLOADS = {
    "wsgi": ("/w/download", lambda size: {"size": size, "seed": 11, "chunk": 65536}),
    "asgi": ("/a/download", lambda size: {"size": size, "chunk": 65536}),
}


def expected_download(kind: str, size: int) -> str:
    """sha256 of what DOWNLOADS[kind] sends: seeded random parts (WSGI), or one seeded
    part repeated (ASGI)."""
    digest = hashlib.sha256()
    if kind == "wsgi":
        for piece in random_chunks(11, size, 65536):
            digest.update(piece)
    else:
        piece = random.Random(65536).randbytes(65536)
        for start in range(0, size, 65536):
            digest.update(piece[: min(65536, size - start)])
    return digest.hexdigest()


def test_a_50_mb_upload_streams_through_the_process(streaming, kind, measurement):
    path = UPLOADS[kind]
    assert streaming.post(path, content=b"x" * CHUNK).status_code == 200  # warm up
    children = children_of(streaming.pid)
    before = {pid: rss_kib(pid) for pid in children}
    with RssSampler(streaming) as parent_rss:
        upload = post_streamed_upload(streaming, path, SIZE, CHUNK)
    assert upload.response.status_code == 200, upload.response.text
    body = upload.response.json()
    assert (body.get("bytes"), body.get("sha256")) == (SIZE, upload.sha256), {k: body.get(k) for k in ("bytes", "sha256")}
    growth = upload.rss_peak_kib - upload.rss_before_kib
    child_growth = max(rss_kib(pid) - before[pid] for pid in children)
    measurement(f"process {kind} 50 MB upload: Caddy RSS +{growth} KiB, the app's processes +{child_growth} KiB at most")
    assert growth < MAX_RSS_GROWTH_KIB, f"Caddy's RSS grew by {growth} KiB during a 50 MB upload"
    assert child_growth < MAX_RSS_GROWTH_KIB, f"the app's process grew by {child_growth} KiB"


def test_a_50_mb_download_streams_through_the_process(streaming, kind, measurement):
    path, params = DOWNLOADS[kind]
    assert len(streaming.get(path, params=params(CHUNK)).content) == CHUNK  # warm up
    received, count = hashlib.sha256(), 0
    before = streaming.rss_kib()
    with RssSampler(streaming) as rss:
        with streaming.client.stream("GET", path, params=params(SIZE)) as response:
            assert response.status_code == 200
            for piece in response.iter_bytes():
                received.update(piece)
                count += len(piece)
    assert count == SIZE and received.hexdigest() == expected_download(kind, SIZE)
    growth = rss.peak - before
    measurement(f"process {kind} 50 MB download: Caddy RSS +{growth} KiB")
    assert growth < MAX_RSS_GROWTH_KIB, f"Caddy's RSS grew by {growth} KiB during a 50 MB download"


def test_a_slow_reader_holds_the_app_back_instead_of_filling_memory(streaming, kind):
    """A client that reads nothing: the app's process must stop sending within a
    bounded window, not push the whole body into Caddy."""
    path, params = DOWNLOADS[kind]
    before = streaming.rss_kib()
    with httpx.Client(base_url=streaming.base_url, timeout=60) as client:
        with client.stream("GET", path, params=params(SIZE)) as response:
            assert response.status_code == 200
            time.sleep(3)  # the app could send all 50 MB in this time
            growth = streaming.rss_kib() - before
            for _ in response.iter_bytes():
                pass
    assert growth < MAX_RSS_GROWTH_KIB, f"Caddy buffered {growth} KiB for a client that read nothing"


def test_server_sent_events_arrive_one_by_one(streaming):
    arrivals = []
    with streaming.client.stream("GET", "/a/sse", params={"n": 4, "gap": 0.3}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                arrivals.append(time.monotonic())
    assert len(arrivals) == 4
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.15, f"events arrived bunched, gaps {gaps}"


def test_a_websocket_echoes_through_the_process(streaming):
    url = streaming.base_url.replace("http://", "ws://") + "/ws/echo"
    with ws_connect(url, open_timeout=10, close_timeout=5) as ws:
        for n in range(20):
            ws.send(f"hello {n}")
            assert ws.recv(timeout=10) == f"hello {n}"
        blob = os.urandom(200_000)
        ws.send(blob)
        assert ws.recv(timeout=10) == blob


def test_a_client_leaving_mid_stream_is_seen_by_the_app(streaming):
    token = uuid.uuid4().hex
    with httpx.Client(base_url=streaming.base_url, timeout=30) as client:
        with client.stream("GET", "/a/forever", params={"token": token}) as response:
            assert response.status_code == 200
            next(response.iter_bytes())
    report = wait_until(lambda: streaming.get_json("/a/report", params={"token": token}).get("disconnect"), timeout=10)
    assert report, streaming.get_json("/a/report", params={"token": token})


# ------------------------------------------------------------------- supervision


def crash_with(caddy, prefix: str, how: str, pid: int) -> None:
    """Ends the app's process pid: os._exit, a segfault, or SIGKILL from outside."""
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
        return
    with httpx.Client(base_url=caddy.base_url, timeout=30) as client:
        response = client.get(f"{prefix}/{how}")
    assert response.status_code == 502, (how, response.status_code, response.text)


def death_notices(caddy, pid: int) -> list[dict]:
    return [
        e for _, e in caddy.log_entries_containing("its requests in flight got 502")
        if e and e.get("pid") == pid
    ]


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def crash_site(request, caddy_launcher, make_venv):
    """The crashing app in one process, next to another process app and an in-process
    app that must keep serving."""
    kind = request.param
    body = "\n".join(
        [
            process_block("/crash/*", kind),
            process_block("/other/*", "asgi" if kind == "wsgi" else "wsgi"),
            python_block("/probe/*", "probe:app", working_dir=app_dir("probe")),
        ]
    )
    caddy = caddy_launcher.start(body)
    caddy.kind = kind
    yield caddy
    caddy.stop()


def serving_pid(caddy, prefix: str) -> int:
    """The pid of a process serving prefix, once one does (after a restart, say)."""
    def pid():
        response = caddy.get(f"{prefix}/info")
        return response.status_code == 200 and response.json()["pid"]

    found = wait_until(pid, timeout=30)
    assert found, tail(caddy.log_text())
    return found


@pytest.mark.parametrize("how", ["exit", "segv", "sigkill"])
def test_a_dying_process_fails_its_requests_with_502_and_is_restarted(crash_site, how):
    caddy = crash_site
    pid = serving_pid(caddy, "/crash")
    other_pid = caddy.get_json("/other/info")["pid"]
    token = uuid.uuid4().hex

    in_flight = {}

    def long_request():
        with httpx.Client(base_url=caddy.base_url, timeout=60) as client:
            in_flight["response"] = client.get("/crash/sleep", params={"s": "30", "token": token})

    waiter = threading.Thread(target=long_request)
    waiter.start()
    assert caddy.wait_for_log(f"vivarium-process-sleeping {token}"), tail(caddy.log_text())
    crash_with(caddy, "/crash", how, pid)
    waiter.join(30)
    assert not waiter.is_alive(), "the request in flight was never answered"
    assert in_flight["response"].status_code == 502, in_flight["response"].text

    # The other apps never noticed.
    assert caddy.get_json("/other/info")["pid"] == other_pid
    assert caddy.get_json("/probe/info")["pid"] == caddy.pid

    # The death is logged with the app, the pid, how it ended and what it ran.
    assert wait_until(lambda: death_notices(caddy, pid), timeout=15), tail(caddy.log_text())
    notice = death_notices(caddy, pid)[0]
    assert notice["module"].startswith("process_app:") and notice["app"].endswith("-crash"), notice
    if how == "exit":
        assert notice.get("exit_code") == 3, notice
        assert caddy.log_entries_containing("calls os._exit(3): the process exits now"), tail(caddy.log_text())
    elif how == "sigkill":
        assert notice.get("signal") == "SIGKILL", notice
    else:
        assert "SIGSEGV" in json.dumps(notice), notice
    assert any(f"/crash/sleep?s=30&token={token}" in r for r in notice.get("requests", [])), notice

    # A new process serves.
    def new_pid():
        response = caddy.get("/crash/info")
        return response.status_code == 200 and response.json()["pid"] != pid and response.json()["pid"]

    restarted = wait_until(new_pid, timeout=30)
    assert restarted, tail(caddy.log_text())
    assert children_of(caddy.pid) == sorted([restarted, other_pid]), (children_of(caddy.pid), restarted, other_pid)
    assert not alive(pid)


def test_an_app_that_cannot_start_again_answers_503_and_the_log_says_why(start_caddy, kind, tmp_path):
    app = tmp_path / "process_app"
    shutil.copytree(app_dir("process_app"), app, ignore=shutil.ignore_patterns("__pycache__"))
    caddy = start_caddy(
        "\n".join([process_block("/p/*", kind, working_dir=app), python_block("/probe/*", "probe:app", working_dir=app_dir("probe"))])
    )
    pid = caddy.get_json("/p/info")["pid"]
    (app / "refuse-to-start").write_text("")
    os.kill(pid, signal.SIGKILL)

    assert caddy.wait_for_log("failed to start 5 times in a row", timeout=60), tail(caddy.log_text())
    response = caddy.get("/p/info")
    assert response.status_code == 503, response.text
    assert response.headers.get("Retry-After"), response.headers
    loop = [e for _, e in caddy.log_entries_containing("failed to start 5 times in a row") if e]
    assert "refusing to start, refuse-to-start is present" in loop[0]["reason"], loop[0]
    # each request's error names the reason too
    assert wait_until(lambda: caddy.log_entries_containing("keeps failing to start: RuntimeError"), timeout=10), tail(caddy.log_text())
    assert caddy.get_json("/probe/info")["pid"] == caddy.pid
    assert children_of(caddy.pid) == [], "a process that failed to start was left running"


def test_the_first_start_failing_refuses_the_config_with_the_apps_error(caddy_must_refuse, kind, tmp_path):
    app = tmp_path / "process_app"
    shutil.copytree(app_dir("process_app"), app, ignore=shutil.ignore_patterns("__pycache__"))
    (app / "refuse-to-start").write_text("")
    failure = caddy_must_refuse(process_block(None, kind, working_dir=app))
    assert failure.returncode != 0
    assert "refusing to start, refuse-to-start is present" in failure.output, tail(failure.output)


LOOP_APP = """
import asyncio


async def app(scope, receive, send):
    loop = type(asyncio.get_running_loop())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": f"{loop.__module__}.{loop.__qualname__}".encode()})
"""


@pytest.mark.parametrize("with_uvloop", [True, False], ids=["venv-with-uvloop", "venv-without"])
def test_an_asgi_process_runs_uvloops_loop_where_its_venv_has_uvloop(start_caddy, make_venv, tmp_path, with_uvloop):
    import app_requirements as reqs

    (tmp_path / "loop_app.py").write_text(LOOP_APP)
    venv = make_venv("uvloop", reqs.UVLOOP) if with_uvloop else make_venv("six-new", reqs.SIX)
    caddy = start_caddy(
        python_block("/p/*", module_asgi="loop_app:app", isolation="process", working_dir=tmp_path, venv=venv)
    )
    loops = {caddy.get("/p/").text for _ in range(20)}
    assert loops == ({"uvloop.Loop"} if with_uvloop else {"asyncio.unix_events._UnixSelectorEventLoop"}), loops


def test_reload_and_stop_leave_no_process_behind(start_caddy, kind):
    caddy = start_caddy(process_block("/p/*", kind, interpreters=2))
    first = children_of(caddy.pid)
    assert len(first) == 2, first
    caddy.reload(process_block("/p/*", kind, interpreters=3), force=True)
    assert wait_until(lambda: not any(alive(p) for p in first), timeout=30), "old processes outlived the reload"
    second = children_of(caddy.pid)
    assert len(second) == 3 and not set(second) & set(first), (first, second)
    assert caddy.get("/p/info").status_code == 200
    caddy.stop()
    assert caddy.proc.returncode == 0, tail(caddy.log_text())
    left = [p for p in second if alive(p)]
    assert not left, f"processes {left} outlived Caddy's stop"


def test_no_process_outlives_caddy_killed_with_sigkill(start_caddy, kind):
    caddy = start_caddy(process_block("/p/*", kind, interpreters=2))
    kids = children_of(caddy.pid)
    assert len(kids) == 2, kids
    caddy.proc.kill()
    caddy.proc.wait(10)
    assert wait_until(lambda: not any(alive(p) for p in kids), timeout=10), (
        f"processes {[p for p in kids if alive(p)]} outlived Caddy's SIGKILL"
    )


# -------------------------------------------- apps that need processes, side by side


@pytest.fixture(scope="module")
def venvs(make_venv):
    import app_requirements as reqs

    return {
        "fastapi-a": make_venv("fastapi-a", reqs.FASTAPI),
        "fastapi-b": make_venv("fastapi-b", reqs.FASTAPI),
        "flask": make_venv("flask", reqs.FLASK),
        "django": make_venv("django", reqs.DJANGO),
    }


def fastapi_block(matcher, venv, **options):
    return python_block(
        matcher, module_asgi="fastapi_app:app", lifespan="on", isolation="process",
        working_dir=app_dir("fastapi_app"), venv=venv, **options,
    )


@pytest.fixture(scope="module")
def four_apps(caddy_launcher, venvs):
    body = "\n".join(
        [
            fastapi_block("/fa/*", venvs["fastapi-a"], interpreters=2),
            fastapi_block("/fb/*", venvs["fastapi-b"]),
            python_block("/flask/*", "flask_app:app", working_dir=app_dir("flask_app"), venv=venvs["flask"]),
            python_block(
                "/django/*", "django_app:application", working_dir=app_dir("django_app"),
                venv=venvs["django"], isolation="process",
            ),
        ]
    )
    caddy = caddy_launcher.start(body)
    yield caddy
    caddy.stop()


def test_two_fastapi_apps_a_flask_app_and_a_django_app_serve_at_once(four_apps, venvs):
    caddy = four_apps
    info = {name: caddy.get_json(f"/{name}/info") for name in ("fa", "fb", "flask", "django")}
    assert info["flask"]["pid"] == caddy.pid, "Flask loads in an own-GIL interpreter of Caddy itself"
    kids = set(children_of(caddy.pid))
    assert {info["fa"]["pid"], info["fb"]["pid"], info["django"]["pid"]} <= kids, (info, kids)
    assert len({info["fa"]["pid"], info["fb"]["pid"], info["django"]["pid"]}) == 3, info
    assert len(kids) == 4, f"fa has 2 processes, fb and django 1 each: {kids}"
    for name in ("fa", "fb"):
        site = os.path.realpath(venvs[f"fastapi-{name[1]}"])
        assert os.path.realpath(info[name]["pydantic_core_file"]).startswith(site + os.sep), info[name]

    clients, per_client = 4, 100
    failures, counts, lock = [], {}, threading.Lock()

    def one(app: str, http: httpx.Client, n: int) -> str | None:
        if app in ("fa", "fb"):
            r = http.post(f"/{app}/items", json={"name": f"item-{n}", "price": n * 0.5, "quantity": 3, "tags": ["z", "a"]})
            want = {"name": f"ITEM-{n}", "total": round(n * 0.5 * 3, 2), "tags": ["a", "z"], "interp_id": 0}
        elif app == "flask":
            r = http.get("/flask/square", params={"n": n})
            want = {"app": "flask", "n": n, "square": n * n, "interp_id": info["flask"]["interp_id"]}
        else:
            r = http.get("/django/cube", params={"n": n})
            want = {"app": "django", "n": n, "cube": n**3, "interp_id": 0}
        if r.status_code != 200:
            return f"{app} n={n}: {r.status_code} {r.text[:300]}"
        return None if r.json() == want else f"{app} n={n}: got {r.json()}, want {want}"

    def client(index: int) -> None:
        with httpx.Client(base_url=caddy.base_url, timeout=60) as http:
            for j in range(per_client):
                n = index * 1000 + j + 1
                app = ("fa", "fb", "flask", "django")[(index + j) % 4]
                try:
                    problem = one(app, http, n)
                except Exception as exc:  # noqa: BLE001 - every failure is reported
                    problem = f"{app} n={n}: {exc!r}"
                with lock:
                    counts[app] = counts.get(app, 0) + 1
                    if problem:
                        failures.append(problem)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not any(t.is_alive() for t in threads), "load clients did not finish"
    assert not failures, f"{len(failures)} wrong answers, first: {failures[:5]}\n{tail(caddy.log_text())}"
    assert counts == {"fa": 100, "fb": 100, "flask": 100, "django": 100}, counts
    assert set(children_of(caddy.pid)) == kids, "a process was replaced under load"


def timed_requests(base_url: str, path: str, n: int, count: int) -> tuple[float, list[dict]]:
    """count identical requests at once, on connections opened beforehand: the wall
    time until all are answered, and their bodies."""
    barrier = threading.Barrier(count + 1)
    clients = [httpx.Client(base_url=base_url, timeout=120) for _ in range(count)]
    for c in clients:
        assert c.get(path, params={"n": 1}).status_code == 200

    def one(c):
        barrier.wait()
        r = c.get(path, params={"n": n})
        assert r.status_code == 200, r.text
        return r.json()

    try:
        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(one, c) for c in clients]
            barrier.wait()
            started = time.perf_counter()
            bodies = [f.result() for f in futures]
            return time.perf_counter() - started, bodies
    finally:
        for c in clients:
            c.close()


def test_a_cpu_bound_fastapi_endpoint_on_two_processes_runs_two_requests_in_parallel(four_apps, measurement):
    """Behaviour, not speed: each round times one request alone, then two at once. On
    one GIL the two could not overlap and would take twice as long; on two processes
    they do. One alone and two at once run back to back, so steady load on the machine
    slows both alike; the best of up to 12 rounds counts, since load can only make a
    round look worse. Every round, the two loops must also have run at the same time."""
    caddy = four_apps
    n = 200_000
    while (cpu := caddy.get_json("/fa/cpu", params={"n": n})["cpu"]) < 0.1:
        n *= 4
    n = int(n * 0.3 / cpu)
    rounds, overlaps = [], []
    for _ in range(12):
        alone, _ = timed_requests(caddy.base_url, "/fa/cpu", n, 1)
        pair, bodies = timed_requests(caddy.base_url, "/fa/cpu", n, 2)
        rounds.append((pair / alone, pair, alone, sorted(b["pid"] for b in bodies)))
        # How much of the shorter loop ran while the other ran too: on one GIL, none.
        a, b = bodies
        shared = min(a["ended"], b["ended"]) - max(a["began"], b["began"])
        overlaps.append(max(0.0, shared) / min(a["ended"] - a["began"], b["ended"] - b["began"]))
        if pair / alone < 1.6:
            break
    best = min(rounds)
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    measurement(
        f"process 2 FastAPI /cpu: two requests at once took {best[0]:.2f}x one alone (rounds: "
        + ", ".join(f"{p:.3f}s/{a:.3f}s={r:.2f} on {pids}" for r, p, a, pids in rounds)
        + f"; load average {load}); the loops overlapped {min(overlaps):.0%} at least"
    )
    assert min(overlaps) > 0.5, f"the two loops did not run at the same time: overlaps {overlaps}, {rounds}"
    assert all(len(set(p)) == 2 for _, _, _, p in rounds), f"two requests at once did not go to two processes: {rounds}"
    assert best[0] < 1.6, f"two CPU-bound requests on two processes took {best[0]:.2f}x one alone: {rounds}"


# ---------------------------------------------------------------- isolation auto


def auto_choices(caddy) -> list[dict]:
    return [e for _, e in caddy.log_entries_containing("isolation auto: ") if e]


def test_isolation_auto_keeps_an_app_that_loads_in_an_own_gil_interpreter_in_caddy(start_caddy):
    caddy = start_caddy(python_block("/p/*", "probe:app", working_dir=app_dir("probe"), isolation="auto", interpreters=2))
    info = caddy.get_json("/p/info")
    assert info["pid"] == caddy.pid and info["interp_id"] != 0, info
    assert children_of(caddy.pid) == [], "the probe's process outlived the probe"
    (choice,) = auto_choices(caddy)
    assert choice["msg"].startswith("isolation auto: interpreter") and choice["module"] == "probe:app", choice


def test_isolation_auto_runs_fastapi_in_processes_and_says_why(start_caddy, venvs):
    caddy = start_caddy(
        python_block(
            "/fa/*", module_asgi="fastapi_app:app", lifespan="on", isolation="auto",
            working_dir=app_dir("fastapi_app"), venv=venvs["fastapi-a"], interpreters=2,
        )
    )
    info = caddy.get_json("/fa/info")
    assert info["pid"] in children_of(caddy.pid) and len(children_of(caddy.pid)) == 2, info
    (choice,) = auto_choices(caddy)
    assert choice["msg"].startswith("isolation auto: process"), choice
    assert "pydantic_core" in choice["why"], choice
    response = caddy.post("/fa/items", json={"name": "pen", "price": 1.25, "quantity": 4})
    assert response.status_code == 200 and response.json()["total"] == 5.0, response.text


def test_isolation_auto_refuses_an_app_that_imports_nowhere_with_its_error(caddy_must_refuse):
    failure = caddy_must_refuse(python_block(None, "boom:app", working_dir=app_dir("broken"), isolation="auto"))
    assert failure.returncode != 0
    assert "vivarium-test: boom at import time" in failure.output, tail(failure.output)


# ------------------------------------------------------------------ user and group


@pytest.fixture
def public_tree(vivarium_bin):
    """bin/caddy and process_app copied where any user may read and run them (the
    checkout itself may sit in a directory only root can enter), and two files: one
    only root may read, one anyone may."""
    root = tempfile.mkdtemp(prefix="vivarium-public-")
    os.chmod(root, 0o755)
    shutil.copy2(vivarium_bin, os.path.join(root, "caddy"))
    shutil.copytree(app_dir("process_app"), os.path.join(root, "process_app"), ignore=shutil.ignore_patterns("__pycache__"))
    for name, mode in (("secret", 0o600), ("public", 0o644)):
        path = os.path.join(root, name)
        with open(path, "w") as fh:
            fh.write(name)
        os.chmod(path, mode)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_user_and_group_run_the_apps_processes_as_that_user(caddy_launcher, public_tree, kind):
    nobody = pwd.getpwnam("nobody")
    nogroup = grp.getgrgid(nobody.pw_gid)
    caddy = Caddy(os.path.join(public_tree, "caddy"), caddy_launcher.tmp_path_factory.mktemp("caddy-user"))
    caddy_launcher.running.append(caddy)
    try:
        caddy.start(
            process_block(
                "/p/*", kind, working_dir=os.path.join(public_tree, "process_app"),
                user="nobody", group=nogroup.gr_name, interpreters=2,
            )
        )
        info = caddy.get_json("/p/info")
        assert (info["uid"], info["gid"]) == (nobody.pw_uid, nobody.pw_gid), info
        assert 0 not in info["groups"], f"the process kept root's groups: {info}"
        assert info["home"] == nobody.pw_dir, info
        for pid in children_of(caddy.pid):
            assert proc_status(pid, "Uid").split()[:2] == [str(nobody.pw_uid)] * 2

        def read(path):
            return caddy.get_json("/p/read", params={"path": path})

        assert read(os.path.join(public_tree, "public")) == {"ok": True, "size": 6}
        secret = read(os.path.join(public_tree, "secret"))
        assert not secret["ok"] and "PermissionError" in secret["error"], secret
        environ = read(f"/proc/{caddy.pid}/environ")
        assert not environ["ok"], f"the app read Caddy's environment: {environ}"
        signalled = caddy.get_json("/p/kill0", params={"pid": caddy.pid})
        assert signalled == {"ok": False, "error": "PermissionError"}, signalled
    finally:
        caddy.stop()


def test_user_outside_isolation_process_is_refused(caddy_must_refuse):
    failure = caddy_must_refuse(
        python_block(None, "probe:app", working_dir=app_dir("probe"), isolation="interpreter", user="nobody")
    )
    assert "user and group need isolation process" in failure.output, tail(failure.output)


def test_an_unknown_user_is_refused_naming_it(caddy_must_refuse):
    failure = caddy_must_refuse(process_block(None, "wsgi", user="no-such-user-vivarium"))
    assert "user no-such-user-vivarium: no such user" in failure.output, tail(failure.output)


def test_term_and_int_sent_to_a_process_leave_it_to_caddy(start_caddy, kind):
    """systemd stops a unit by signalling all its processes: the children wait for
    Caddy to stop them, after their requests."""
    caddy = start_caddy(process_block("/p/*", kind))
    pid = serving_pid(caddy, "/p")
    token = uuid.uuid4().hex
    result = {}

    def long_request():
        with httpx.Client(base_url=caddy.base_url, timeout=60) as client:
            result["response"] = client.get("/p/sleep", params={"s": "2", "token": token})

    waiter = threading.Thread(target=long_request)
    waiter.start()
    assert caddy.wait_for_log(f"vivarium-process-sleeping {token}"), tail(caddy.log_text())
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    waiter.join(30)
    assert result["response"].status_code == 200, result["response"].text
    assert caddy.get_json("/p/info")["pid"] == pid
    caddy.proc.send_signal(signal.SIGTERM)
    assert caddy.proc.wait(30) == 0
    assert wait_until(lambda: not alive(pid), timeout=10)


def test_clients_that_leave_as_the_app_answers_leave_nothing_in_flight(start_caddy, kind):
    """A client gone just before the app's last part reaches Caddy: the request must
    end there, not wait for more from a process that has answered."""
    caddy = start_caddy(process_block("/p/*", kind, interpreters=2, name="leavers"))

    def impatient(n):
        with httpx.Client(base_url=caddy.base_url, timeout=0.03 + (n % 7) * 0.005) as client:
            try:
                client.get("/p/sleep", params={"s": "0.03"})
            except httpx.TimeoutException:
                pass

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(impatient, range(300)))

    def in_flight():
        return sum(i["in_flight"] for i in admin_apps(caddy)["leavers"]["instances"])

    assert wait_until(lambda: in_flight() == 0, timeout=15), f"{in_flight()} requests still in flight"
    assert caddy.get("/p/info").status_code == 200


def test_env_and_timeout_apply_in_the_apps_processes(start_caddy, kind):
    caddy = start_caddy(
        process_block("/p/*", kind, timeout="1s")
        .replace("\tisolation process", "\tisolation process\n\tenv VIVARIUM_TEST_ENV from-the-caddyfile")
    )
    assert "VIVARIUM_TEST_ENV" in caddy.get_json("/p/info")["vivarium_env"]
    started = time.monotonic()
    slow = caddy.get("/p/sleep", params={"s": "4"})
    assert slow.status_code == 504, slow.text
    assert time.monotonic() - started < 3.5, "the timeout did not cut the request short"
    assert wait_until(lambda: caddy.log_entries_containing("ran past its timeout"), timeout=10), tail(caddy.log_text())
    assert caddy.get("/p/info").status_code == 200


# ------------------------------------------------- supervision, as the admin API shows it


def processes_of(caddy, name: str) -> list[dict]:
    (instance,) = [i for i in admin_apps(caddy)[name]["instances"] if i["state"] == "serving"]
    return instance["processes"]


def test_the_admin_api_and_metrics_show_each_process_its_restarts_and_last_exit(start_caddy, kind):
    caddy = start_caddy(process_block("/p/*", kind, interpreters=2, name="procs"))
    procs = processes_of(caddy, "procs")
    assert [p["process"] for p in procs] == [0, 1]
    assert sorted(p["pid"] for p in procs) == children_of(caddy.pid)
    for p in procs:
        assert p["state"] == "serving" and p["restarts"] == 0 and "last_exit" not in p, p
        assert p["rss_bytes"] > 0, p
    metrics = scrape(caddy)
    assert metrics.value("vivarium_processes_up", app="procs") == 2
    for p in procs:
        assert metrics.value("vivarium_process_resident_bytes", app="procs", pid=str(p["pid"])) > 0

    victim = procs[0]["pid"]
    os.kill(victim, signal.SIGKILL)

    def replaced():
        now = processes_of(caddy, "procs")[0]
        return now["state"] == "serving" and now["pid"] != victim and now
    now = wait_until(replaced, timeout=30)
    assert now, processes_of(caddy, "procs")
    assert now["restarts"] == 1, now
    exit_ = now["last_exit"]
    assert (exit_["pid"], exit_["signal"], exit_["killed_by_caddy"]) == (victim, "SIGKILL", False), exit_
    assert exit_["status"] == "was killed by signal SIGKILL", exit_
    assert processes_of(caddy, "procs")[1]["pid"] == procs[1]["pid"], "the other process was touched"
    metrics = scrape(caddy)
    assert metrics.value("vivarium_restarts_total", app="procs", reason="crash") == 1
    assert metrics.value("vivarium_processes_up", app="procs") == 2
    assert metrics.get("vivarium_process_resident_bytes", app="procs", pid=str(victim)) is None


@pytest.mark.parametrize("how", ["reload", "sigterm", "restart"])
def test_a_stop_lets_the_processes_finish_their_requests_first(start_caddy, kind, how):
    body = "\n".join([process_block("/p/*", kind, name="procs"),
                      python_block("/probe/*", "probe:app", working_dir=app_dir("probe"))])
    caddy = start_caddy(body)
    pid = serving_pid(caddy, "/p")
    token = uuid.uuid4().hex
    result = {}

    def long_request():
        with httpx.Client(base_url=caddy.base_url, timeout=60) as client:
            result["response"] = client.get("/p/sleep", params={"s": "3", "token": token})

    waiter = threading.Thread(target=long_request)
    waiter.start()
    assert caddy.wait_for_log(f"vivarium-process-sleeping {token}"), tail(caddy.log_text())
    if how == "reload":
        caddy.reload(body, force=True)
    elif how == "restart":
        assert admin_restart(caddy, "procs").status_code == 200
    else:
        caddy.proc.send_signal(signal.SIGTERM)
        assert caddy.proc.wait(60) == 0, tail(caddy.log_text())
    waiter.join(60)
    assert result["response"].status_code == 200, result["response"].text
    assert wait_until(lambda: not alive(pid), timeout=30), "the stopped process outlived its stop"
    if how != "sigterm":
        assert serving_pid(caddy, "/p") != pid
        assert caddy.get_json("/probe/info")["pid"] == caddy.pid
