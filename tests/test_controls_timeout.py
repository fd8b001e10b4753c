"""`timeout D`: a request whose app goes D without answering (or sending or reading
part of it) gets 504, or a cut connection once its headers went out; the log names
the app and the request and shows where its Python code was; and that code is
interrupted (RequestTimeout raised in its thread, the task cancelled in ASGI), which
frees the thread. Code that does not come back to Python is reported as such. Reloads
and SIGTERM finish within a bounded grace whatever the app does. Another app in the
same process serves throughout."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controls_support import KINDS, block, info, log_entries
from support import proc_status, scrape, tail, wait_until

TIMEOUT = "2s"
BOUND = 30  # seconds any one exchange may take here (a hang guard, not a timing check)


def config(kind, **options):
    options.setdefault("timeout", TIMEOUT)
    return "\n".join([block("/a/*", kind, name="controlled", **options), block("/other/*", "wsgi")])


def get(server, path, **params):
    with httpx.Client(base_url=server.base_url, timeout=BOUND) as client:
        return client.get(path, params=params)


def timeout_entry(server, path, needle=""):
    """The entry that reports the timeout of GET path (logged once the
    interrupt is done, after the 504)."""

    def found():
        entries = [e for e in log_entries(server, f"request GET {path}") if "ran past its timeout" in e["msg"]]
        return [e for e in entries if needle in e["msg"]]

    entries = wait_until(found, timeout=BOUND)
    assert entries, f"no timeout entry for {path} ({needle!r}):\n{tail(server.log_text())}"
    return entries[0]


def assert_other_app_serves(server):
    assert get(server, "/other/info").status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_code_that_spins_gets_504_and_is_interrupted_where_it_was(start_caddy, kind):
    server = start_caddy(config(kind, threads=1))

    response = get(server, "/a/spin")

    assert response.status_code == 504, response.text
    entry = wait_until(lambda: [e for e in log_entries(server, "request GET /a/spin") if "traceback" in e])
    assert entry, tail(server.log_text())
    entry = entry[0]
    assert entry["level"] == "error" and entry["app"] == "controlled", entry
    assert entry["module"] == "controls_app:" + ("app" if kind == "wsgi" else "asgi"), entry
    assert "RequestTimeout is raised" in entry["msg"], entry
    assert "in spin_forever" in entry["traceback"], entry["traceback"]
    # the interrupted code let go of its thread (WSGI) or event loop (ASGI)
    assert get(server, "/a/info").status_code == 200
    assert_other_app_serves(server)
    assert scrape(server).value("vivarium_timeouts_total", app="controlled", kind="request") == 1


def test_four_spinning_requests_on_four_threads_leave_the_app_reachable(start_caddy):
    server = start_caddy(config("wsgi", threads=4))
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: get(server, "/a/spin"), range(4)))
        assert_other_app_serves(server)
    assert [r.status_code for r in responses] == [504] * 4
    assert get(server, "/a/info").status_code == 200


def test_an_awaiting_asgi_task_is_cancelled_where_it_waited(start_caddy):
    server = start_caddy(config("asgi"))

    assert get(server, "/a/wait").status_code == 504

    entry = wait_until(lambda: [e for e in log_entries(server, "its task is cancelled where it waited")])
    assert entry, tail(server.log_text())
    assert "GET /a/wait" in entry[0]["msg"] and "wait_forever" in entry[0]["traceback"], entry[0]
    assert get(server, "/a/info").status_code == 200
    assert_other_app_serves(server)


def test_a_call_that_does_not_return_to_python_is_reported(start_caddy):
    server = start_caddy(config("wsgi", threads=1))

    assert get(server, "/a/sleep", s=8).status_code == 504

    entry = timeout_entry(server, "/a/sleep?s=8", "RequestTimeout is raised")
    assert "time.sleep" in entry["traceback"], entry
    assert server.wait_for_log("has not returned"), tail(server.log_text())
    # once the sleep is over, the exception ends the request and frees the thread
    assert wait_until(lambda: get(server, "/a/info").status_code == 200, timeout=BOUND)


def test_c_code_holding_the_gil_is_detected_and_interrupted_when_it_returns(start_caddy):
    server = start_caddy(config("wsgi", threads=1))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, server, "/a/hold", s=8)
        assert server.wait_for_log("request GET /a/hold?s=8 ran past its timeout", timeout=BOUND)
        # another app has its own GIL: it serves while this one is held
        assert_other_app_serves(server)
        assert held.result(timeout=BOUND).status_code == 504
    entry = timeout_entry(server, "/a/hold?s=8", "holds the interpreter's GIL in C code")
    assert entry["level"] == "error"
    assert server.wait_for_log("has come back to Python and RequestTimeout is raised", timeout=BOUND), (
        tail(server.log_text()))
    assert get(server, "/a/info").status_code == 200


def test_unbounded_recursion_is_interrupted(start_caddy):
    server = start_caddy(config("wsgi", threads=1))

    assert get(server, "/a/recurse").status_code == 504

    entry = wait_until(lambda: [e for e in log_entries(server, "request GET /a/recurse") if "traceback" in e])
    assert entry, tail(server.log_text())
    # deep in the recursion: the innermost frames are shown, and how many there were
    assert "in recurse" in entry[0]["traceback"] and "frames in all" in entry[0]["traceback"], entry[0]
    assert wait_until(lambda: get(server, "/a/info").status_code == 200, timeout=BOUND)
    # Unbounded, this recursion took 2.9 GB in 20 s: it grows only until its
    # timeout, and what it took is given back once it is interrupted.
    peak_kib = int(proc_status(server.pid, "VmHWM").split()[0])
    rss_kib = int(proc_status(server.pid, "VmRSS").split()[0])
    print(f"recursion: Caddy peaked at {peak_kib // 1024} MiB, holds {rss_kib // 1024} MiB after")
    assert rss_kib < 512 * 1024, f"Caddy holds {rss_kib // 1024} MiB (peak {peak_kib // 1024} MiB)"
    assert_other_app_serves(server)


@pytest.mark.parametrize("kind", KINDS)
def test_a_reload_ends_within_the_grace_even_when_the_app_swallows_the_interrupt(start_caddy, kind):
    server = start_caddy(config(kind, timeout="3s"))
    old = info(server, "/a")["interpreter"]
    with ThreadPoolExecutor(1) as pool:
        stuck = pool.submit(get, server, "/a/stubborn")
        assert server.wait_for_log("controls: /stubborn begins"), tail(server.log_text())
        started = time.monotonic()
        server.reload(config(kind, timeout="3s"), force=True)
        took = time.monotonic() - started
        assert stuck.result(timeout=BOUND).status_code == 504
    print(f"reload of an app running {kind} /stubborn: {took:.1f} s")
    # grace (the app's timeout, 3 s) + 10 s for interrupted code to come back
    assert took < 25, f"the reload took {took:.1f} s"
    assert info(server, "/a")["interpreter"] != old
    assert server.wait_for_log("did not stop", timeout=BOUND), tail(server.log_text())
    assert_other_app_serves(server)


@pytest.mark.parametrize("path", ["/a/spin", "/a/stubborn", "/a/hold?s=3600"])
def test_sigterm_ends_the_process_whatever_the_app_does(caddy_launcher, path):
    server = caddy_launcher.start(config("wsgi", threads=1))
    with ThreadPoolExecutor(1) as pool:
        pool.submit(lambda: httpx.get(server.base_url + path, timeout=BOUND))
        assert server.wait_for_log(f"controls: {path.split('?')[0].removeprefix('/a')} begins"), (
            tail(server.log_text()))
        started = time.monotonic()
        code = server.stop(timeout=60)
        took = time.monotonic() - started
    print(f"SIGTERM of an app running {path}: {took:.1f} s")
    assert code == 0, f"exit code {code}:\n{tail(server.log_text())}"
    # the request's timeout, the stop's grace and its wait for interrupted code
    assert took < 40, f"SIGTERM took {took:.1f} s:\n{tail(server.log_text())}"


@pytest.mark.parametrize("how", ["reload", "sigterm"])
def test_several_apps_that_do_not_finish_stop_together_not_one_after_another(caddy_launcher, how):
    stuck = [("/a", "wsgi", "interpreter"), ("/b", "asgi", "interpreter"), ("/c", "wsgi", "process"),
             ("/d", "wsgi", "interpreter")]

    def body():
        return "\n".join([block(f"{prefix}/*", kind, timeout="3s", isolation=isolation, name=f"stuck{prefix[1]}")
                          for prefix, kind, isolation in stuck] + [block("/other/*", "wsgi")])

    server = caddy_launcher.start(body())
    with ThreadPoolExecutor(len(stuck)) as pool:
        answers = [pool.submit(get, server, f"{prefix}/stubborn") for prefix, _, _ in stuck]
        assert wait_until(lambda: server.log_text().count("controls: /stubborn begins") == len(stuck), timeout=BOUND), (
            tail(server.log_text()))
        started = time.monotonic()
        if how == "reload":
            server.reload(body(), force=True)
        else:
            assert server.stop(timeout=120) == 0, tail(server.log_text())
        took = time.monotonic() - started
        assert [a.result(timeout=BOUND).status_code for a in answers] == [504] * len(stuck)
    print(f"{how} with {len(stuck)} apps that do not finish: {took:.1f} s")
    assert took < 60, f"the {how} took {took:.1f} s:\n{tail(server.log_text())}"
    # Each app in Caddy's process gives up on its code at the end of its bound
    # (its grace, 3 s, then 10 s for interrupted code): together, those ends
    # come at once; one app after another, 13 s apart.
    ends = sorted(e["ts"] for e in log_entries(server, "app did not stop: its code was interrupted"))
    assert len(ends) == 3, tail(server.log_text())
    assert ends[-1] - ends[0] < 6, f"the apps stopped {ends[-1] - ends[0]:.1f} s apart:\n{tail(server.log_text())}"
    if how == "reload":
        assert_other_app_serves(server)
        server.stop()
