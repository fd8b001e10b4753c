"""The death notice. A fatal signal in an app's code (a segfault, an abort) kills the
process, which still dies of that signal; before it does, one JSON line in Caddy's log
names the app, interpreter and request that crashed, every request running at that
moment, and carries Python's faulthandler trace of the crashing thread. os._exit()
raises in an app of its own interpreter (`interpreter`, `shared`) and leaves the
process serving; in `main`, which owns the process, it exits after a line that says
which app ended it. Real crashes, in real child processes."""

import json
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controls_support import KINDS, block
from support import tail, wait_until

BOUND = 30


def fatal_line(server):
    for line in server.log_text().splitlines():
        if '"level":"fatal"' in line and "the process dies of" in line:
            return json.loads(line)
    raise AssertionError(f"no death notice in the log:\n{tail(server.log_text())}")


def crash(caddy_launcher, kind, path, isolation="interpreter"):
    """Crashes the app at /c/ with GET path while the other app sleeps in a request;
    returns the server, once its process is gone."""
    server = caddy_launcher.start("\n".join([
        block("/c/*", kind, isolation=isolation, name="crasher"),
        block("/o/*", "wsgi", name="bystander"),
    ]))
    with ThreadPoolExecutor(2) as pool:
        pool.submit(lambda: httpx.get(server.base_url + "/o/sleep?s=20", timeout=BOUND))
        assert server.wait_for_log("controls: /sleep begins"), tail(server.log_text())
        try:
            httpx.get(server.base_url + path, timeout=BOUND)
        except httpx.HTTPError:
            pass
        assert wait_until(lambda: not server.alive(), timeout=BOUND), "the process outlived the crash"
    return server


@pytest.mark.parametrize("kind", KINDS)
def test_a_segfault_kills_the_process_with_a_notice_naming_what_ran(caddy_launcher, kind):
    server = crash(caddy_launcher, kind, "/c/segv")

    assert server.proc.returncode == -signal.SIGSEGV, server.proc.returncode
    notice = fatal_line(server)
    app = "crasher"
    assert notice["signal"] == "SIGSEGV" and notice["app"] == app, notice
    assert notice["logger"] == "http.handlers.python" and isinstance(notice["ts"], float), notice
    assert "GET /c/segv" in notice["msg"] or kind == "asgi", notice["msg"]
    assert "Segmentation fault" in notice["traceback"] and "string_at" in notice["traceback"], notice["traceback"]
    crashed = [r for r in notice["running"] if r.get("crashed")]
    assert len(crashed) == 1 and crashed[0]["app"] == app, notice["running"]
    assert any("GET /c/segv" in request for request in crashed[0].get("requests", [])), crashed
    others = [r for r in notice["running"] if "GET /o/sleep?s=20" in r.get("requests", [])]
    assert others and others[0]["app"] == "bystander", notice["running"]
    assert others[0]["interpreter"] != crashed[0]["interpreter"], notice["running"]


@pytest.mark.parametrize("isolation", ["shared", "main"])
def test_an_abort_kills_the_process_with_a_notice_in_any_isolation(caddy_launcher, isolation):
    server = crash(caddy_launcher, "wsgi", "/c/abort", isolation=isolation)

    assert server.proc.returncode == -signal.SIGABRT, server.proc.returncode
    notice = fatal_line(server)
    assert notice["signal"] == "SIGABRT" and "while it ran GET /c/abort" in notice["msg"], notice
    assert "in answer" in notice["traceback"], notice["traceback"]


@pytest.mark.parametrize("isolation", ["interpreter", "shared"])
def test_os_exit_raises_in_an_app_of_its_own_interpreter(start_caddy, isolation):
    server = start_caddy("\n".join([block("/c/*", "wsgi", isolation=isolation), block("/o/*", "asgi")]))

    response = server.get("/c/exit")

    assert response.status_code == 500
    assert response.text.startswith("RuntimeError: os._exit(3) would end the whole Caddy process"), response.text
    assert server.alive()
    assert server.get("/c/info").status_code == 200
    assert server.get("/o/info").status_code == 200


def test_os_exit_in_the_main_interpreter_exits_after_saying_who(caddy_launcher):
    server = caddy_launcher.start("\n".join([block("/c/*", "wsgi", isolation="main"), block("/o/*", "wsgi")]))
    try:
        server.get("/c/exit")
    except httpx.HTTPError:
        pass
    assert wait_until(lambda: not server.alive(), timeout=BOUND)
    assert server.proc.returncode == 3
    assert server.wait_for_log("app controls_app:app calls os._exit(3): the process exits now"), (
        tail(server.log_text()))
